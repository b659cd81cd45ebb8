//! The `inetsvc` command line's library: how to name a server ([`target`]), the book's
//! chapter 7 clients ([`client`]), the prober ([`probe`]), the load generator
//! ([`bench`]), the admin API client ([`fault`]) and the game days ([`gameday`]).

pub mod bench;
pub mod client;
pub mod exporter;
pub mod fault;
pub mod gameday;
pub mod probe;
pub mod target;
