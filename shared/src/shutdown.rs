//! Readiness and the shutdown signal.
//!
//! The sequence (DESIGN.md, "Shutdown"): on SIGTERM or SIGINT readiness goes false at once,
//! the service keeps serving for the drain delay (so load balancers notice), then stops
//! accepting, lets connections in flight finish up to the shutdown timeout, and exits 0.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Where the service is in its life; `/readyz` answers 200 only in [`Phase::Serving`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Listeners are being bound.
    Starting = 0,
    /// Every listener is bound and serving.
    Serving = 1,
    /// A shutdown signal arrived: still finishing work, but not to be sent more.
    Draining = 2,
}

/// The readiness state shared by the admin server and the runtime.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

impl Readiness {
    /// A new state, [`Phase::Starting`].
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }
}

/// Waits for SIGTERM or SIGINT and returns the signal's name.
pub async fn signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_moves_through_the_phases() {
        let readiness = Readiness::new();
        let seen_by_admin = readiness.clone();
        assert_eq!(seen_by_admin.phase(), Phase::Starting);
        readiness.set(Phase::Serving);
        assert_eq!(seen_by_admin.phase(), Phase::Serving);
        readiness.set(Phase::Draining);
        assert_eq!(seen_by_admin.phase(), Phase::Draining);
    }
}
