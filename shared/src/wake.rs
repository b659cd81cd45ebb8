//! Polling a future that the hot paths wait on beside every read, accept or datagram,
//! without paying for its registration again on every poll (docs/architecture.md,
//! "A connection's path").
//!
//! A timer or a signal registers the task's waker when polled; polled again by the same
//! task, it only re-registers the same waker (tokio's timer clones and drops it, a
//! cancellation token takes its lock). Between a registration and the moment the source
//! can have changed, nothing is to be learned: [`Registered`] polls the inner future only
//! on the first poll, from a new task, or when its owner says it may be ready.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The waker a future was last registered with.
#[derive(Debug, Default)]
pub(crate) struct Registered(Option<Waker>);

impl Registered {
    /// Polls `inner` unless it is registered with this task's waker and `may_be_ready` is
    /// false; call [`Registered::forget`] whenever `inner` is re-armed.
    pub(crate) fn poll<F: Future + ?Sized>(
        &mut self,
        inner: Pin<&mut F>,
        cx: &mut Context<'_>,
        may_be_ready: bool,
    ) -> Poll<F::Output> {
        if let Some(waker) = &self.0 {
            if !may_be_ready && waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        let polled = inner.poll(cx);
        if polled.is_pending() {
            self.0 = Some(cx.waker().clone());
        }
        polled
    }

    /// The inner future was re-armed: its next poll must register again.
    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }
}
