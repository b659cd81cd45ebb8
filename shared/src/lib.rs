//! The inetsvc runtime: everything the ECHO, DAYTIME and TIME services have in common.
//!
//! A service implements [`Service`] (its [`ServiceSpec`] is an associated constant) and its
//! binary calls [`main`]; the runtime does the rest — configuration, sockets, limits,
//! timeouts, metrics, logs, traces, the admin HTTP port, fault injection, signals and
//! graceful drain — so that every service behaves the same way and each mechanism lives in
//! exactly one place. The folders are the architecture (docs/architecture.md):
//!
//! - `config/`: layering and checking of settings; knows no owner of a key;
//! - `options`: the runtime's own keys and their typed form;
//! - `net/`: binding, the TCP accept loop, connections, the UDP loop, the server designs;
//! - `fault/`: the fault catalogue, the live table, the datapath's hooks, clock and loads;
//! - `admin/`: the admin HTTP server, the fault API with its token check, the healthcheck;
//! - `metrics`, `telemetry`, `logging`: what is counted, traced and logged;
//! - `limits`: caps, the UDP loop guard and rate limiter, the open-file limit;
//! - `shutdown`: readiness, signals and the request to finish;
//! - `wake`: polling what the hot paths wait on without registering again each time;
//! - `reload`: reading the configuration again on SIGHUP, the API or a file change;
//! - `run`: a service's life, start to exit.
//!
//! What a service sees is re-exported here; [`testing`] holds what the tests of other
//! crates need, and nothing else is public.

mod admin;
mod clock;
mod config;
mod fault;
mod limits;
mod logging;
mod metrics;
mod net;
mod options;
mod reload;
mod run;
mod service;
mod shutdown;
mod telemetry;
pub mod testing;
mod wake;

pub use config::{ConfigError, Key, Settings};
pub use net::{Conn, ConnError};
pub use run::main;
pub use service::{Service, ServiceSpec};
pub use shutdown::Shutdown;
