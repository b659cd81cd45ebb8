//! The injected clock.
//!
//! Protocol functions take the time as an argument and the runtime reads it through
//! [`Clock`], so that tests and clock faults never depend on the wall clock (DESIGN.md,
//! "Layout"). The services run on [`crate::fault::Faults`], which is the system clock
//! with the clock faults applied.

use std::time::SystemTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time as the service should report it.
    fn now(&self) -> SystemTime;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock stopped at one instant, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}
