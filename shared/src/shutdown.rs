//! Readiness and the shutdown signals.
//!
//! The sequence (docs/architecture.md, "Shutdown"): on SIGTERM or SIGINT readiness goes
//! false at once, the service keeps serving for the drain delay (so load balancers
//! notice), then stops accepting and lets connections in flight finish up to the shutdown
//! timeout. Shortly before that deadline every session still open is handed a
//! [`Shutdown`] request, so that a long one (an ECHO session) ends gracefully instead of
//! being cut; then the process exits 0.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::wake::Registered;

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

/// The signals a service listens for, registered once at start so that none of them can
/// kill it with the default action: SIGTERM and SIGINT stop it (a second one exits at
/// once), SIGUSR1 and SIGUSR2 are logged and otherwise ignored. SIGHUP, which tools send
/// expecting a reload, is handed to the reloader ([`crate::reload`]).
pub struct Signals {
    term: Signal,
    int: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Signals {
    /// Installs the handlers; the second value is the SIGHUP stream, for the reloader.
    pub fn new() -> std::io::Result<(Self, Signal)> {
        let signals = Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        };
        Ok((signals, signal(SignalKind::hangup())?))
    }

    /// Waits for SIGTERM or SIGINT and returns its name; the signals that do not stop the
    /// service are logged meanwhile.
    pub async fn first_stop(&mut self) -> &'static str {
        loop {
            let ignored = tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.usr1.recv() => "SIGUSR1",
                _ = self.usr2.recv() => "SIGUSR2",
            };
            tracing::warn!(
                signal = ignored,
                "signal ignored: SIGHUP reloads the configuration, this one changes nothing"
            );
        }
    }

    /// After the first stop: waits for a second SIGTERM or SIGINT and exits the process at
    /// once, with 128 + the signal's number as the shell reports a signal death (143 for
    /// SIGTERM, 130 for SIGINT).
    pub async fn exit_on_second_stop(mut self) {
        let signal = self.first_stop().await;
        let code = if signal == "SIGTERM" { 143 } else { 130 };
        tracing::warn!(
            signal,
            code,
            "second stop signal: exiting at once, without finishing the drain"
        );
        std::process::exit(code);
    }
}

/// A one-way signal the hot paths wait on beside every accept, datagram or read: firing
/// it is rare, waiting on it constant. [`Trigger::fired`] is pinned once per loop and is
/// an atomic load per poll after its first; a cancellation token would take its lock
/// (shared by every waiter) on every poll, and again to register and deregister each
/// time a loop re-creates its future (docs/architecture.md, "A connection's path").
/// A clone is one atomic increment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trigger(Arc<TriggerState>);

#[derive(Debug, Default)]
struct TriggerState {
    /// Wakes the waiters.
    token: CancellationToken,
    /// Set before `token` is cancelled: what the waiters read.
    flag: AtomicBool,
}

impl Trigger {
    /// A trigger not yet fired.
    pub(crate) fn new() -> Self {
        Trigger::default()
    }

    /// Fires: every waiter completes.
    pub(crate) fn fire(&self) {
        self.0.flag.store(true, Ordering::Release);
        self.0.token.cancel();
    }

    /// Whether it has fired.
    pub(crate) fn is_fired(&self) -> bool {
        self.0.flag.load(Ordering::Acquire)
    }

    /// Completes once fired; made to be pinned once and polled again and again.
    pub(crate) fn fired(&self) -> Fired {
        Fired {
            trigger: self.clone(),
            wait: Box::pin(self.0.token.clone().cancelled_owned()),
            registered: Registered::default(),
        }
    }
}

/// The future of [`Trigger::fired`] (and [`Shutdown::requested`]).
pub struct Fired {
    trigger: Trigger,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    registered: Registered,
}

impl Future for Fired {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Fired {
            trigger,
            wait,
            registered,
        } = self.get_mut();
        if trigger.is_fired() {
            return Poll::Ready(());
        }
        // The flag is set before the token is cancelled, and the token wakes the waker it
        // holds: while that is this task's, polling it again would only take its lock.
        registered.poll(wait.as_mut(), cx, false)
    }
}

/// The request to finish, handed to every TCP session: a service whose sessions last
/// (ECHO) waits on [`Shutdown::requested`] beside its reads and closes gracefully when it
/// fires. Sessions that answer at once (DAYTIME, TIME) may ignore it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    trigger: Trigger,
    /// When the runtime cuts what is still open; set when finishing is requested.
    deadline: Arc<OnceLock<Instant>>,
}

impl Shutdown {
    /// A signal not yet fired.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Completes once the session is asked to finish. Made to be pinned once per session
    /// and polled beside every read: after its first poll it is one atomic load
    /// ([`Trigger`]).
    pub fn requested(&self) -> Fired {
        self.trigger.fired()
    }

    /// Whether the session has been asked to finish.
    pub fn is_requested(&self) -> bool {
        self.trigger.is_fired()
    }

    /// Asks every session to finish; the runtime cuts them at `deadline`.
    pub(crate) fn request(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
        self.trigger.fire();
    }

    /// When a graceful close must have stopped lingering, if finishing was requested:
    /// halfway from now to the deadline, so that the close is done before the cut.
    pub(crate) fn linger_end(&self) -> Option<Instant> {
        let deadline = *self.deadline.get()?;
        let now = Instant::now();
        Some(now + deadline.saturating_duration_since(now) / 2)
    }
}

/// How long before the shutdown deadline sessions are asked to finish: a quarter of the
/// shutdown timeout, at most a second — enough for a FIN and the client's answer to it,
/// short enough that a client sending until the end is served nearly all of the timeout.
pub(crate) fn finish_lead(shutdown_timeout: Duration) -> Duration {
    (shutdown_timeout / 4).min(Duration::from_secs(1))
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

    #[test]
    fn sessions_are_asked_to_finish_shortly_before_the_deadline() {
        assert_eq!(finish_lead(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(
            finish_lead(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(finish_lead(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_request_reaches_every_clone_with_its_deadline() {
        let shutdown = Shutdown::new();
        let session = shutdown.clone();
        assert!(!session.is_requested() && session.linger_end().is_none());
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut waiting = Box::pin(session.requested());
        // Registered, then polled again without the signal: still waiting.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        shutdown.request(deadline);
        waiting.await;
        assert!(session.is_requested());
        let end = session.linger_end().unwrap();
        assert!(
            end < deadline && end > Instant::now(),
            "linger ends before the cut"
        );
    }

    #[tokio::test]
    async fn a_session_parked_on_the_request_is_woken_by_it() {
        let shutdown = Shutdown::new();
        let (parked, spinning) = (shutdown.clone(), shutdown.clone());
        let parked = tokio::spawn(async move { parked.requested().await });
        // A session's loop: polled again and again by the same task, as beside reads.
        let spinning = tokio::spawn(async move {
            let requested = spinning.requested();
            tokio::pin!(requested);
            let mut polls = 0u64;
            loop {
                tokio::select! {
                    biased;
                    () = &mut requested => return polls,
                    () = tokio::task::yield_now() => polls += 1,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        shutdown.request(Instant::now() + Duration::from_secs(1));
        let limit = Duration::from_secs(5);
        tokio::time::timeout(limit, parked).await.unwrap().unwrap();
        let polls = tokio::time::timeout(limit, spinning)
            .await
            .unwrap()
            .unwrap();
        assert!(polls > 0, "the loop ran before the request");
    }
}
