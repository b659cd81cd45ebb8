//! The datapath settings a reload can change while the listeners run
//! (docs/architecture.md, "Reloading"). A reload publishes a whole new [`Tunables`]; each
//! accept or receive loop keeps its own copy and looks for a newer one with one relaxed
//! atomic load per connection or datagram, so the hot paths take no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::limits::DenyList;
use crate::options::{TcpOptions, UdpOptions};
use crate::telemetry::Sampler;

/// What a reload changes in the datapath.
#[derive(Debug, Clone)]
pub(crate) struct Tunables {
    /// Timeouts, caps, buffer size (the design itself never changes live).
    pub tcp: TcpOptions,
    /// Loop guard and rate limits.
    pub udp: UdpOptions,
    /// Sources refused on both transports.
    pub deny: DenyList,
    /// Which connections get a span.
    pub tcp_spans: Sampler,
    /// Which datagrams get a span.
    pub udp_spans: Sampler,
}

/// A value published by reloads, numbered so that readers notice a new one cheaply.
#[derive(Debug)]
pub(crate) struct Live<T> {
    generation: AtomicU64,
    value: RwLock<T>,
}

impl<T: Clone> Live<T> {
    pub(crate) fn new(value: T) -> Arc<Self> {
        Arc::new(Live {
            generation: AtomicU64::new(0),
            value: RwLock::new(value),
        })
    }

    /// Publishes `value` to every reader.
    pub(crate) fn set(&self, value: T) {
        *self.value.write().unwrap_or_else(|p| p.into_inner()) = value;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A reader with its own copy.
    pub(crate) fn reader(self: &Arc<Self>) -> Cached<T> {
        let seen = self.generation.load(Ordering::Acquire);
        let value = self.value.read().unwrap_or_else(|p| p.into_inner()).clone();
        Cached {
            live: Arc::clone(self),
            seen,
            value,
        }
    }
}

/// One loop's copy of a [`Live`] value.
#[derive(Debug)]
pub(crate) struct Cached<T> {
    live: Arc<Live<T>>,
    seen: u64,
    value: T,
}

impl<T: Clone> Cached<T> {
    /// The newest value: the copy, refreshed first if a reload published another.
    #[inline]
    pub(crate) fn get(&mut self) -> &T {
        let now = self.live.generation.load(Ordering::Acquire);
        if now != self.seen {
            self.value = self
                .live
                .value
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            self.seen = now;
        }
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_a_new_value_and_keep_their_copy_until_then() {
        let live = Live::new(1);
        let mut reader = live.reader();
        assert_eq!(*reader.get(), 1);
        live.set(2);
        assert_eq!(*reader.get(), 2);
        let mut late = live.reader();
        assert_eq!(*late.get(), 2);
    }
}
