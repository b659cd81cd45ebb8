//! The hooks the datapath calls: every decision a fault makes about a connection, a write,
//! a close, a datagram or a health answer, and the only code that applies them. The
//! listeners and connections ask here and do what they are told; with no fault set they
//! never get past [`Faults::any`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{random_upto, Fault, FaultKind, Faults};

/// How long a held (reordered) UDP reply waits for a later reply to overtake it.
const REORDER_HOLD: Duration = Duration::from_secs(1);

/// Bytes of late and held UDP answers that may wait at once: past it an answer the
/// faults would delay is dropped and counted, so a datagram flood under `udp_delay`
/// cannot grow memory without bound.
const LATE_BYTES_MAX: usize = 8 << 20;

/// The late UDP answers of one service: their bytes bounded, all discarded at once when
/// `udp_delay` is cleared.
#[derive(Debug, Default)]
pub(super) struct LateAnswers {
    bytes: std::sync::atomic::AtomicUsize,
    /// Cancelled (and replaced) to discard everything waiting.
    discard: std::sync::Mutex<CancellationToken>,
}

impl LateAnswers {
    /// Discards every answer waiting now.
    pub(super) fn discard(&self) {
        let mut token = self.discard.lock().unwrap_or_else(|p| p.into_inner());
        token.cancel();
        *token = CancellationToken::new();
    }
}

/// Room for one late answer in the queue: gives its bytes back when dropped.
struct LateSlot {
    faults: Faults,
    bytes: usize,
}

impl Drop for LateSlot {
    fn drop(&mut self) {
        self.faults
            .0
            .late
            .bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A TCP connection as the faults see it: how much it has sent, and a way to write.
pub(crate) trait ReplyStream {
    /// Why a write failed.
    type Error;
    /// Reply bytes sent so far.
    fn sent(&self) -> u64;
    /// Writes all of `data`, under the connection's own write timeout.
    fn write(&mut self, data: &[u8]) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What the connection does after a faulted write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterWrite {
    /// Carry on.
    Open,
    /// `tcp_reset` reached its byte count: close with a reset.
    Reset,
    /// `truncate` reached its byte count: half-close, and drop later writes.
    Cut,
}

/// How a connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// With a reset (`tcp_reset` at zero bytes on a connection that sent nothing).
    Reset,
    /// Gracefully, after this wait (`slow_close`; zero without it).
    After(Duration),
}

/// Where UDP answers go: the socket, seen only through sending.
pub(crate) trait DatagramOut: Clone + Send + Sync + 'static {
    /// Sends one answer to `to`, counting it; `span` records the bytes.
    fn send(
        &self,
        reply: &[u8],
        to: SocketAddr,
        span: &tracing::Span,
    ) -> impl Future<Output = ()> + Send;

    /// Counts an answer the faults dropped (the late queue was full).
    fn dropped(&self);
}

impl Faults {
    /// `latency`: how long to wait before this reply.
    fn latency(&self) -> Option<Duration> {
        match self.fault(FaultKind::Latency)? {
            Fault::Latency { delay, jitter } => Some(delay + random_upto(jitter)),
            _ => None,
        }
    }

    /// `tcp_refuse`: whether to refuse this connection.
    pub(crate) fn refuse(&self) -> bool {
        self.strikes(FaultKind::TcpRefuse).is_some()
    }

    /// `tcp_reset`: after how many sent bytes to reset this connection, if at all.
    pub(crate) fn reset_after(&self) -> Option<u64> {
        match self.strikes(FaultKind::TcpReset)? {
            Fault::TcpReset { after_bytes, .. } => Some(after_bytes),
            _ => None,
        }
    }

    /// `slow_close`: how long to hold a connection before closing it.
    fn slow_close(&self) -> Option<Duration> {
        match self.fault(FaultKind::SlowClose)? {
            Fault::SlowClose { delay } => Some(delay),
            _ => None,
        }
    }

    /// `bandwidth`: the byte rate replies are held to.
    fn bandwidth(&self) -> Option<u64> {
        match self.fault(FaultKind::Bandwidth)? {
            Fault::Bandwidth { bytes_per_second } => Some(bytes_per_second),
            _ => None,
        }
    }

    /// `truncate`: how many reply bytes are kept.
    fn truncate(&self) -> Option<u64> {
        match self.fault(FaultKind::Truncate)? {
            Fault::Truncate { max_bytes } => Some(max_bytes),
            _ => None,
        }
    }

    /// `corrupt`: inverts one random byte of `reply` when the fault strikes.
    fn corrupt(&self, reply: &mut [u8]) {
        if !reply.is_empty() && self.strikes(FaultKind::Corrupt).is_some() {
            let at = fastrand::usize(..reply.len());
            reply[at] = !reply[at];
        }
    }

    /// `udp_drop`: whether to drop this request.
    pub(crate) fn udp_drop(&self) -> bool {
        self.strikes(FaultKind::UdpDrop).is_some()
    }

    /// `udp_duplicate`: whether to send this answer twice.
    fn udp_duplicate(&self) -> bool {
        self.strikes(FaultKind::UdpDuplicate).is_some()
    }

    /// `udp_delay`: how late to send this answer.
    fn udp_delay(&self) -> Option<Duration> {
        match self.strikes(FaultKind::UdpDelay)? {
            Fault::UdpDelay { delay, jitter, .. } => Some(delay + random_upto(jitter)),
            _ => None,
        }
    }

    /// `udp_reorder`: whether to hold this answer back.
    fn udp_reorder(&self) -> bool {
        self.strikes(FaultKind::UdpReorder).is_some()
    }

    /// Holds an answer back unless one is held already (then `None`: send it now); the
    /// number returned lets a timer release exactly this one later.
    fn hold(&self, reply: &[u8], to: SocketAddr) -> Option<u64> {
        let mut held = self.0.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return None;
        }
        let generation = self.0.generation.fetch_add(1, Ordering::Relaxed);
        *held = Some(Held {
            reply: reply.to_vec(),
            to,
            generation,
        });
        Some(generation)
    }

    /// Takes the held answer, if any (or only the one numbered `generation`).
    pub(super) fn take_held(&self, generation: Option<u64>) -> Option<Held> {
        let mut held = self.0.held.lock().unwrap_or_else(|p| p.into_inner());
        match (&*held, generation) {
            (Some(h), Some(g)) if h.generation != g => None,
            _ => held.take(),
        }
    }

    /// `not_ready`: whether `/readyz` must fail.
    pub(crate) fn not_ready(&self) -> bool {
        self.fault(FaultKind::NotReady).is_some()
    }

    /// `not_live`: whether `/healthz` must fail.
    pub(crate) fn not_live(&self) -> bool {
        self.fault(FaultKind::NotLive).is_some()
    }

    /// Writes one TCP reply with the faults applied, in the order a reply meets them:
    /// latency, truncation, corruption, reset, bandwidth. `reset_after` is the
    /// connection's `tcp_reset` decision, taken at accept.
    pub(crate) async fn tcp_write<S: ReplyStream + Send>(
        &self,
        stream: &mut S,
        reset_after: Option<u64>,
        data: &[u8],
    ) -> Result<AfterWrite, S::Error> {
        if let Some(wait) = self.latency() {
            tokio::time::sleep(wait).await;
        }
        let sent = stream.sent();
        let mut reply = data.to_vec();
        let cut = self
            .truncate()
            .is_some_and(|max| cut_at(&mut reply, sent, max));
        self.corrupt(&mut reply);
        let reset = reset_after.is_some_and(|after| cut_at(&mut reply, sent, after));
        match self.bandwidth() {
            Some(rate) => {
                // Chunks of a tenth of a second's worth keep the rate smooth.
                let chunk = (rate / 10).clamp(1, 64 * 1024) as usize;
                for part in reply.chunks(chunk) {
                    stream.write(part).await?;
                    tokio::time::sleep(Duration::from_secs_f64(part.len() as f64 / rate as f64))
                        .await;
                }
            }
            None => stream.write(&reply).await?,
        }
        Ok(if reset {
            AfterWrite::Reset
        } else if cut {
            AfterWrite::Cut
        } else {
            AfterWrite::Open
        })
    }

    /// How a connection that has sent `sent` bytes closes.
    pub(crate) fn tcp_close(&self, reset_after: Option<u64>, sent: u64) -> Close {
        if reset_after == Some(0) && sent == 0 {
            return Close::Reset;
        }
        Close::After(self.slow_close().unwrap_or_default())
    }

    /// Sends one UDP answer with the faults applied: latency, truncation, corruption,
    /// then late (delay), held back (reorder) or twice (duplicate).
    pub(crate) async fn udp_answer<O: DatagramOut>(
        &self,
        out: &O,
        to: SocketAddr,
        span: &tracing::Span,
        reply: &mut Vec<u8>,
    ) {
        if let Some(wait) = self.latency() {
            tokio::time::sleep(wait).await;
        }
        if let Some(max) = self.truncate() {
            reply.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        }
        self.corrupt(reply);
        if let Some(wait) = self.udp_delay() {
            // Late, but without holding up the answers behind it; bounded, and discarded
            // when the fault is cleared.
            let Some((slot, discard)) = self.late_slot(reply.len()) else {
                return out.dropped();
            };
            let (out, reply, span) = (out.clone(), reply.clone(), span.clone());
            tokio::spawn(async move {
                let _slot = slot;
                tokio::select! {
                    _ = discard.cancelled() => {}
                    _ = tokio::time::sleep(wait) => out.send(&reply, to, &span).await,
                }
            });
            return;
        }
        if self.udp_reorder() {
            if let Some(generation) = self.hold(reply, to) {
                // Released by the next answer, or after the hold time if none comes.
                let (out, faults) = (out.clone(), self.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(REORDER_HOLD).await;
                    if let Some(held) = faults.take_held(Some(generation)) {
                        out.send(&held.reply, held.to, &tracing::Span::none()).await;
                    }
                });
                return;
            }
        }
        out.send(reply, to, span).await;
        if let Some(held) = self.take_held(None) {
            out.send(&held.reply, held.to, &tracing::Span::none()).await;
        }
        if self.udp_duplicate() {
            out.send(reply, to, span).await;
        }
    }
}

impl Faults {
    /// Room for a late answer of `bytes`, with the token that discards it; `None` when
    /// the queue is full.
    fn late_slot(&self, bytes: usize) -> Option<(LateSlot, CancellationToken)> {
        let late = &self.0.late;
        let before = late.bytes.fetch_add(bytes, Ordering::Relaxed);
        let slot = LateSlot {
            faults: self.clone(),
            bytes,
        };
        if before + bytes > LATE_BYTES_MAX {
            return None;
        }
        let discard = late
            .discard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Some((slot, discard))
    }
}

/// Cuts `reply` so that at most `limit` bytes will have been sent on a connection that
/// has sent `sent`; true when the limit is reached (truncate and tcp_reset both stop
/// there).
fn cut_at(reply: &mut Vec<u8>, sent: u64, limit: u64) -> bool {
    let room = limit.saturating_sub(sent);
    if reply.len() as u64 >= room {
        reply.truncate(room as usize);
        true
    } else {
        false
    }
}

/// A UDP answer held back by `udp_reorder`.
#[derive(Debug)]
pub(super) struct Held {
    /// The answer.
    reply: Vec<u8>,
    /// Where it goes.
    to: SocketAddr,
    generation: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_answers_are_released_once() {
        let faults = Faults::new(None, None);
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let first = faults.hold(b"a", to).unwrap();
        assert_eq!(faults.hold(b"b", to), None, "one answer held at a time");
        assert!(faults.take_held(Some(first + 1)).is_none());
        assert_eq!(faults.take_held(Some(first)).unwrap().reply, b"a");
        assert!(faults.take_held(None).is_none());
    }

    #[test]
    fn replies_are_cut_at_the_limit_counted_over_the_connection() {
        let mut reply = b"abcdef".to_vec();
        assert!(!cut_at(&mut reply, 0, 10), "room left");
        assert_eq!(reply, b"abcdef");
        assert!(cut_at(&mut reply, 4, 6), "2 of 6 bytes fit after 4 sent");
        assert_eq!(reply, b"ab");
        let mut late = b"xyz".to_vec();
        assert!(cut_at(&mut late, 9, 6), "nothing fits once past the limit");
        assert!(late.is_empty());
    }

    #[test]
    fn close_resets_only_an_untouched_connection_at_zero_bytes() {
        let faults = Faults::new(None, None);
        assert_eq!(faults.tcp_close(Some(0), 0), Close::Reset);
        assert_eq!(faults.tcp_close(Some(0), 5), Close::After(Duration::ZERO));
        assert_eq!(faults.tcp_close(None, 0), Close::After(Duration::ZERO));
        faults.set(
            super::super::FaultRequest::parse_spec("slow_close:delay=3s").unwrap(),
            "test",
        );
        assert_eq!(
            faults.tcp_close(None, 0),
            Close::After(Duration::from_secs(3))
        );
    }
}
