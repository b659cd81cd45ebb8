//! Exponential backoff for a failing `accept` or `recv`, so that EMFILE never spins a core.

use std::time::Duration;

/// First and longest pause after a failing `accept` or `recv`.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Exponential backoff for a failing `accept` or `recv`: never spin, never give up.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(Duration::ZERO)
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Duration::ZERO;
    }

    /// The next pause, doubling up to [`BACKOFF_MAX`].
    pub(crate) fn next(&mut self) -> Duration {
        self.0 = (self.0 * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next(), BACKOFF_MIN);
        assert_eq!(backoff.next(), BACKOFF_MIN * 2);
        for _ in 0..20 {
            backoff.next();
        }
        assert_eq!(backoff.next(), BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.next(), BACKOFF_MIN);
    }
}
