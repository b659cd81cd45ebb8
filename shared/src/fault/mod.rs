//! Fault injection, for operator training: break a service on purpose, watch the
//! symptoms, find and fix the cause (docs/faults.md, docs/training/).
//!
//! Faults are set at start (the `faults` key) or at run time through the admin API under
//! `/admin/` (see [`crate::admin`]). Each has an optional expiry, shows as
//! `inetsvc_fault_active{fault}` and is logged when set and cleared. The folder holds the
//! whole mechanism (docs/architecture.md, "Fault injection"):
//!
//! - [`catalogue`]: every fault, its parameters and the one parser;
//! - this module: the live table, shared by the listeners, the clock and the admin API;
//! - [`hooks`]: the decisions the datapath asks for, and the only code that applies them;
//! - `clock`: the clock faults, as the services' [`crate::clock::Clock`];
//! - `load`: the CPU and memory loads.
//!
//! The hot paths ask [`Faults::any`] first: with no fault set, the whole mechanism costs
//! one relaxed atomic load per reply.

pub mod catalogue;
mod clock;
pub mod hooks;
mod load;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntGaugeVec;

pub use catalogue::{initial_faults, Fault, FaultKind, FaultRequest, FAULT_KEYS};
use hooks::Held;
use load::{start_load, Load};

/// One fault that is set.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) request: FaultRequest,
    /// Where it came from (`config`, `api`), for the logs and the API.
    pub(super) origin: &'static str,
    pub(super) set_at: Instant,
    pub(super) set_wall: SystemTime,
    pub(super) expires_at: Option<Instant>,
    _load: Option<Load>,
}

impl Entry {
    pub(super) fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// The faults of one service, shared by its listeners, its clock and its admin API.
#[derive(Clone)]
pub struct Faults(Arc<Inner>);

struct Inner {
    /// True while any fault is set: the hot paths' one check.
    any: AtomicBool,
    table: RwLock<BTreeMap<FaultKind, Entry>>,
    /// `inetsvc_fault_active{service, fault}`, when metrics are on.
    gauge: Option<(IntGaugeVec, &'static str)>,
    held: Mutex<Option<Held>>,
    generation: AtomicU64,
    /// Held while a load starts: loads start one at a time.
    loads: Mutex<()>,
    /// Late (`udp_delay`) answers waiting to be sent.
    late: hooks::LateAnswers,
    /// The value in force of every setting, for the faults' `when=KEY=VALUE` conditions;
    /// read only while a fault is set.
    settings: RwLock<BTreeMap<&'static str, String>>,
    /// Where `clock_wrap` jumps to: the protocol's wrap instant, handed in by the service
    /// (the runtime knows no protocol); `None`: the fault leaves the clock alone.
    wrap_at: Option<SystemTime>,
}

/// A snapshot of one set fault, for the API and `inetsvc fault list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActiveFault {
    /// The fault's name.
    pub fault: &'static str,
    /// `PARAM=VALUE,…`.
    pub params: String,
    /// Where it was set: `config` or `api`.
    pub origin: &'static str,
    /// Seconds since it was set.
    pub age_seconds: f64,
    /// Seconds until it expires; absent: until cleared.
    pub expires_in_seconds: Option<f64>,
    /// Whether it acts now (false while its `when=` condition does not hold).
    pub in_effect: bool,
}

impl Faults {
    /// No fault set; `gauge` is the `inetsvc_fault_active` family and the service label,
    /// `wrap_at` the instant `clock_wrap` leads up to.
    pub fn new(gauge: Option<(IntGaugeVec, &'static str)>, wrap_at: Option<SystemTime>) -> Self {
        if let Some((gauge, service)) = &gauge {
            for kind in FaultKind::ALL {
                gauge.with_label_values(&[service, kind.name()]).set(0);
            }
        }
        Faults(Arc::new(Inner {
            any: AtomicBool::new(false),
            table: RwLock::new(BTreeMap::new()),
            gauge,
            held: Mutex::new(None),
            loads: Mutex::new(()),
            late: hooks::LateAnswers::default(),
            generation: AtomicU64::new(0),
            settings: RwLock::new(BTreeMap::new()),
            wrap_at,
        }))
    }

    /// Publishes the settings in force (at start and after each reload).
    pub fn set_settings(&self, settings: BTreeMap<&'static str, String>) {
        *self.0.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// Whether the service has a setting `key` (a `when=` must name one).
    pub fn has_setting(&self, key: &str) -> bool {
        let settings = self.0.settings.read().unwrap_or_else(|p| p.into_inner());
        settings.contains_key(key)
    }

    /// Whether `entry` acts now: not expired, and its condition (if any) holds.
    pub(super) fn in_effect(&self, entry: &Entry, now: Instant) -> bool {
        entry.live(now)
            && entry.request.when.as_ref().is_none_or(|(key, value)| {
                let settings = self.0.settings.read().unwrap_or_else(|p| p.into_inner());
                settings.get(key.as_str()) == Some(value)
            })
    }

    /// Whether any fault is set: the hot paths' fast check.
    #[inline]
    pub fn any(&self) -> bool {
        self.0.any.load(Ordering::Relaxed)
    }

    pub(super) fn table(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<FaultKind, Entry>> {
        // Entries are replaced whole, so a poisoned lock still holds a consistent table.
        self.0.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<FaultKind, Entry>> {
        self.0.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn gauge(&self, kind: FaultKind, value: i64) {
        if let Some((gauge, service)) = &self.0.gauge {
            gauge.with_label_values(&[service, kind.name()]).set(value);
        }
    }

    /// Sets (or replaces) a fault; `origin` says who asked.
    ///
    /// A load replaces the one of its kind before it starts, and loads start one at a
    /// time, so that however many requests race, at most one CPU and one memory load
    /// exist (at most 1 GiB held, not 1 GiB per request).
    pub fn set(&self, request: FaultRequest, origin: &'static str) -> ActiveFault {
        let kind = request.kind;
        let _one_at_a_time = kind
            .is_load()
            .then(|| self.0.loads.lock().unwrap_or_else(|p| p.into_inner()));
        if kind.is_load() {
            // Dropped here, before the new load takes its memory or threads.
            let _old = self.table_mut().remove(&kind);
        }
        let now = Instant::now();
        let entry = Entry {
            _load: start_load(&request.fault),
            expires_at: request.lasts.map(|d| now + d),
            set_at: now,
            set_wall: SystemTime::now(),
            origin,
            request,
        };
        tracing::warn!(
            fault = kind.name(),
            params = %entry.request.params_text(),
            expires_in = ?entry.request.lasts,
            origin,
            "fault set"
        );
        let mut shown = snapshot(kind, &entry, now);
        shown.in_effect = self.in_effect(&entry, now);
        // The old entry (and its load) is dropped after the lock is released.
        let _old = {
            let mut table = self.table_mut();
            let old = table.insert(kind, entry);
            self.0.any.store(true, Ordering::Relaxed);
            old
        };
        self.gauge(kind, 1);
        shown
    }

    /// Clears a fault; returns whether it was set.
    pub fn clear(&self, kind: FaultKind, reason: &'static str) -> bool {
        let removed = {
            let mut table = self.table_mut();
            let removed = table.remove(&kind);
            self.0.any.store(!table.is_empty(), Ordering::Relaxed);
            removed
        };
        if removed.is_some() {
            self.gauge(kind, 0);
            // Clearing takes effect at once: what waits is discarded, not sent late.
            match kind {
                FaultKind::UdpDelay => self.0.late.discard(),
                FaultKind::UdpReorder => drop(self.take_held(None)),
                _ => {}
            }
            tracing::warn!(fault = kind.name(), reason, "fault cleared");
        }
        removed.is_some()
    }

    /// Replaces the faults set by the configuration with `requests` (a reload changed the
    /// `faults` key); faults set through the API stay unless `requests` names their kind.
    pub fn replace_config(&self, requests: Vec<FaultRequest>) {
        let from_config: Vec<FaultKind> = self
            .table()
            .iter()
            .filter(|(_, entry)| entry.origin == "config")
            .map(|(kind, _)| *kind)
            .collect();
        for kind in from_config {
            self.clear(kind, "reloaded");
        }
        for request in requests {
            self.set(request, "config");
        }
    }

    /// Clears every fault; returns how many were set.
    pub fn clear_all(&self) -> usize {
        let kinds: Vec<FaultKind> = self.table().keys().copied().collect();
        kinds
            .into_iter()
            .filter(|&kind| self.clear(kind, "cleared"))
            .count()
    }

    /// Clears the faults whose time is up.
    pub fn expire(&self) {
        if !self.any() {
            return;
        }
        let now = Instant::now();
        let due: Vec<FaultKind> = self
            .table()
            .iter()
            .filter(|(_, entry)| !entry.live(now))
            .map(|(kind, _)| *kind)
            .collect();
        for kind in due {
            self.clear(kind, "expired");
        }
    }

    /// Clears expired faults every 100 ms until `stop`.
    pub async fn expire_until(self, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.expire(),
            }
        }
    }

    /// Every set fault.
    pub fn list(&self) -> Vec<ActiveFault> {
        let now = Instant::now();
        self.table()
            .iter()
            .filter(|(_, entry)| entry.live(now))
            .map(|(kind, entry)| {
                let mut shown = snapshot(*kind, entry, now);
                shown.in_effect = self.in_effect(entry, now);
                shown
            })
            .collect()
    }

    /// The fault of `kind`, if set and not expired.
    pub(super) fn fault(&self, kind: FaultKind) -> Option<Fault> {
        if !self.any() {
            return None;
        }
        let table = self.table();
        let entry = table.get(&kind)?;
        self.in_effect(entry, Instant::now())
            .then_some(entry.request.fault)
    }

    /// The fault of `kind`, if set and its probability strikes this time.
    pub(super) fn strikes(&self, kind: FaultKind) -> Option<Fault> {
        self.fault(kind).filter(|fault| chance(fault.probability()))
    }
}

fn snapshot(kind: FaultKind, entry: &Entry, now: Instant) -> ActiveFault {
    ActiveFault {
        fault: kind.name(),
        params: entry.request.params_text(),
        origin: entry.origin,
        age_seconds: now.saturating_duration_since(entry.set_at).as_secs_f64(),
        expires_in_seconds: entry
            .expires_at
            .map(|at| at.saturating_duration_since(now).as_secs_f64()),
        in_effect: entry.request.when.is_none(),
    }
}

pub(super) fn chance(probability: f64) -> bool {
    probability >= 1.0 || fastrand::f64() < probability
}

pub(super) fn random_upto(max: Duration) -> Duration {
    if max.is_zero() {
        Duration::ZERO
    } else {
        max.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_clears_and_any_follows_the_table() {
        let faults = Faults::new(None, None);
        assert!(!faults.any());
        faults.set(
            FaultRequest::parse_spec("not_ready:for=30ms").unwrap(),
            "test",
        );
        assert!(faults.any() && faults.not_ready());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!faults.not_ready(), "expired faults have no effect");
        faults.expire();
        assert!(!faults.any() && faults.list().is_empty());
    }
}
