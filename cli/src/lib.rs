//! The `inetsvc` command line's library: how to name a server ([`target`]), the book's
//! chapter 7 clients ([`client`]), the prober ([`probe`]) and the load generator
//! ([`bench`]).

pub mod bench;
pub mod client;
pub mod probe;
pub mod target;
