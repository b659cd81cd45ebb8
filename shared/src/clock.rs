//! The injected clock.
//!
//! Protocol functions take the time as an argument and the runtime reads it through
//! [`Clock`], so that tests and clock faults never depend on the wall clock
//! (docs/architecture.md, "Rules"). The services run on [`crate::fault::Faults`], which is
//! the system clock with the clock faults applied.

use std::time::SystemTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time as the service should report it.
    fn now(&self) -> SystemTime;
}
