//! The inetsvc runtime: everything the ECHO, DAYTIME and TIME services have in common.
//!
//! A service crate describes its protocol with a [`ServiceSpec`] and an implementation of
//! [`Service`]; [`run`] does the rest — configuration, sockets, limits, timeouts, metrics,
//! logs, the admin HTTP port, signals and graceful drain — so that every service behaves
//! the same way and each mechanism lives in exactly one place (DESIGN.md, "Runtime").

pub mod admin;
pub mod clock;
pub mod concurrency;
pub mod config;
pub mod conn;
pub mod fault;
pub mod healthcheck;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod metrics;
mod run;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use clock::{Clock, SystemClock};
pub use config::{ConfigError, Key, Settings};
pub use conn::{Conn, ConnError};
pub use run::{main, run};
pub use service::{Service, ServiceSpec};
