//! Timers for the hot path that touch the timer only when it can have changed
//! (docs/architecture.md, "A connection's path").
//!
//! A tokio `Sleep` polled beside every read re-registers the task's waker each time
//! (a waker clone and drop, atomics shared with the timer driver). [`Alarm`] polls its
//! `Sleep` through [`Registered`]: on the first poll, after a reset, from a new task, or
//! once the driver has fired it, and is a few loads otherwise.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

use crate::wake::Registered;

/// A deadline to wait for beside other work.
#[derive(Debug)]
pub(crate) struct Alarm {
    sleep: Pin<Box<Sleep>>,
    registered: Registered,
}

impl Alarm {
    /// An alarm at `deadline`.
    pub(crate) fn at(deadline: Instant) -> Self {
        Alarm {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            registered: Registered::default(),
        }
    }

    /// Moves the alarm to `deadline`.
    pub(crate) fn reset(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
        self.registered.forget();
    }
}

impl Future for Alarm {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Alarm { sleep, registered } = self.get_mut();
        let fired = sleep.is_elapsed();
        registered.poll(sleep.as_mut(), cx, fired)
    }
}

/// The deadline of [`within`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

pin_project_lite::pin_project! {
    /// `work`, unless the deadline passes first: see [`within`].
    pub(crate) struct Within<F> {
        #[pin]
        work: F,
        alarm: Alarm,
    }
}

/// `work`, unless `deadline` passes first: like `tokio::time::timeout_at`, with the timer
/// behind an [`Alarm`]. A plain future, not an `async fn`: an `async fn` would hold
/// `work` twice (the argument and its pinned copy), doubling what every connection
/// allocates and copies.
pub(crate) fn within<F: Future>(deadline: Instant, work: F) -> Within<F> {
    Within {
        work,
        alarm: Alarm::at(deadline),
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(done) = this.work.poll(cx) {
            return Poll::Ready(Ok(done));
        }
        Pin::new(this.alarm).poll(cx).map(|()| Err(Elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn an_alarm_fires_at_its_deadline_and_again_after_a_reset() {
        let start = Instant::now();
        let mut alarm = Alarm::at(start + 50 * MS);
        // Polled again and again before the deadline (as beside reads): still pending.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..3 {
            assert!(Pin::new(&mut alarm).poll(&mut cx).is_pending());
        }
        // Awaited from this task: a new waker, registered, then woken by the timer.
        (&mut alarm).await;
        let first = start.elapsed();
        assert!(first >= 50 * MS && first < 2000 * MS, "{first:?}");
        alarm.reset(Instant::now() + 30 * MS);
        (&mut alarm).await;
        assert!(start.elapsed() >= first + 30 * MS);
    }

    #[tokio::test]
    async fn within_returns_the_work_or_elapsed() {
        let soon = Instant::now() + 50 * MS;
        assert_eq!(within(soon, async { 7 }).await, Ok(7));
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(within(soon, slow).await, Err(Elapsed));
        assert!(Instant::now() >= soon);
    }
}
