//! Protection that is on by default: connection caps, the UDP loop guard and UDP reply
//! rate limits. Each decision is a plain function or a small owned structure, so that it is
//! tested without sockets; the listeners count each refusal with its reason.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Why a TCP connection was refused (the `reason` label of
/// `inetsvc_connections_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `max_connections` reached.
    GlobalCap,
    /// `max_connections_per_source` reached for the client's address.
    PerSourceCap,
    /// Refused by the `tcp_refuse` fault (training).
    Fault,
    /// The source is in `deny_sources`.
    Denied,
}

impl RejectReason {
    /// Every reason, so that metric handles are resolved once at start.
    pub const ALL: [RejectReason; 4] = [
        RejectReason::GlobalCap,
        RejectReason::PerSourceCap,
        RejectReason::Fault,
        RejectReason::Denied,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::GlobalCap => "global_cap",
            RejectReason::PerSourceCap => "per_source_cap",
            RejectReason::Fault => "fault",
            RejectReason::Denied => "denied",
        }
    }
}

/// Why a datagram was dropped unanswered (the `reason` label of
/// `inetsvc_datagrams_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Source port below 1024, 2049, or one of this service's own ports: another service
    /// (chargen, echo, NFS…) would answer us back and loop (CERT CA-1996-01).
    LoopPort,
    /// Source is broadcast, multicast or unspecified: a reply would be amplified or
    /// misdirected.
    NotUnicast,
    /// The source's reply rate is over `udp_rate_per_source`.
    SourceRate,
    /// All replies together are over `udp_rate_global`.
    GlobalRate,
    /// Dropped by the `udp_drop` fault (training).
    Fault,
    /// The source is in `deny_sources`.
    Denied,
}

impl DropReason {
    /// Every reason, so that metric handles are resolved once at start.
    pub const ALL: [DropReason; 6] = [
        DropReason::LoopPort,
        DropReason::NotUnicast,
        DropReason::SourceRate,
        DropReason::GlobalRate,
        DropReason::Fault,
        DropReason::Denied,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::LoopPort => "loop_port",
            DropReason::NotUnicast => "not_unicast",
            DropReason::SourceRate => "rate_limit_source",
            DropReason::GlobalRate => "rate_limit_global",
            DropReason::Fault => "fault",
            DropReason::Denied => "denied",
        }
    }
}

/// The UDP loop guard, in the OpenBSD/FreeBSD inetd tradition: whether a datagram from
/// `source` must be dropped. `own_ports` are the ports this service listens on,
/// `more_ports` those of the rest of the service set (`udp_loop_guard_ports`).
pub fn loop_guard(source: SocketAddr, own_ports: &[u16], more_ports: &[u16]) -> Option<DropReason> {
    let ip = source.ip().to_canonical();
    let not_unicast = match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_multicast() || v6.is_unspecified(),
    };
    if not_unicast {
        return Some(DropReason::NotUnicast);
    }
    let port = source.port();
    // OpenBSD inetd: below 1024 are the privileged services, 2049 is NFS.
    if port < 1024 || port == 2049 || own_ports.contains(&port) || more_ports.contains(&port) {
        return Some(DropReason::LoopPort);
    }
    None
}

/// Source addresses an operator has blocked (`deny_sources`): a TCP connection from one
/// is reset, a datagram dropped, both counted with reason `denied`. The list is short and
/// consulted only when not empty, so the hot paths pay one length check without it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList(Vec<ipnet::IpNet>);

impl DenyList {
    /// `ADDRESS[/PREFIX],…` (IPv4 or IPv6), or `none`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("none") {
            return Ok(DenyList::default());
        }
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<ipnet::IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("`{part}` is not an address or ADDRESS/PREFIX; write 10.0.0.7, 10.0.0.0/24 or `none`")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(DenyList)
    }

    /// Whether `ip` (an IPv4 client on a dual-stack socket arrives IPv4-mapped) is blocked.
    #[inline]
    pub fn denies(&self, ip: IpAddr) -> bool {
        !self.0.is_empty() && {
            let ip = ip.to_canonical();
            self.0.iter().any(|net| net.contains(&ip))
        }
    }
}

/// Counts TCP connections per source address to enforce `max_connections_per_source`.
#[derive(Debug, Clone)]
pub struct SourceCounter {
    /// Connections held per address; entries are removed at zero so the map stays as small
    /// as the number of connected sources, which the global cap bounds.
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// The cap per address; a reload may change it.
    max_per_source: Arc<std::sync::atomic::AtomicUsize>,
}

/// Held while a connection is open; releases its slot when dropped.
#[derive(Debug)]
pub struct SourceSlot {
    /// The counter to give the slot back to.
    counter: SourceCounter,
    /// The address holding the slot.
    ip: IpAddr,
}

impl SourceCounter {
    /// A counter allowing `max_per_source` connections per address.
    pub fn new(max_per_source: usize) -> Self {
        SourceCounter {
            counts: Arc::default(),
            max_per_source: Arc::new(max_per_source.into()),
        }
    }

    /// Changes the cap for slots taken from now on; slots held are kept.
    pub fn set_max(&self, max_per_source: usize) {
        self.max_per_source
            .store(max_per_source, std::sync::atomic::Ordering::Relaxed);
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A panic while holding this lock cannot leave the map inconsistent (each update is
        // a single insert or remove), so a poisoned lock is still safe to use.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for `ip`, or `None` when it already holds the most allowed.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<SourceSlot> {
        let ip = ip.to_canonical();
        let mut counts = self.counts();
        let count = counts.entry(ip).or_insert(0);
        if *count
            >= self
                .max_per_source
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            counter: self.clone(),
            ip,
        })
    }

    /// Connections currently held by `ip`.
    #[cfg(test)]
    pub fn held(&self, ip: IpAddr) -> usize {
        self.counts().get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.counter.counts();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// File descriptors kept free for what is neither a data nor an admin connection:
/// listeners, the process collector's `/proc` reads, logs, the trace exporter.
pub const FD_RESERVE: u64 = 64;

/// Raises the soft open-file limit to the hard limit (as Go and systemd services do) and
/// returns the limit now in force, or `None` if it cannot be read.
pub fn raise_fd_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// The connection cap that fits in `fd_limit` descriptors with [`FD_RESERVE`] and the
/// admin port's `admin_reserve` left over, so that a full service refuses connections with
/// a reset instead of running out of descriptors (EMFILE), and `/metrics` stays reachable.
pub fn connection_cap(requested: usize, fd_limit: u64, admin_reserve: u64) -> usize {
    let room = fd_limit.saturating_sub(FD_RESERVE + admin_reserve).max(1);
    requested.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            updated: now,
        }
    }

    /// Refills for the time passed and takes one token if there is one.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now`, i.e. forgetting it changes nothing.
    fn is_full(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * rate >= burst
    }
}

/// Per-source and global UDP reply rate limits with a bounded source table.
///
/// When the table is full, sources whose buckets have refilled are forgotten (they lose
/// nothing); if it is still full — a flood from many, possibly spoofed, sources — a new
/// source is judged by the global limit alone, so memory stays bounded and the service
/// keeps answering within the global rate instead of locking everyone out.
#[derive(Debug)]
pub struct RateLimiter {
    /// Replies per second per source; 0 disables the per-source limit.
    per_source_rate: f64,
    /// Burst per source.
    per_source_burst: f64,
    /// Replies per second in all; 0 disables the global limit.
    global_rate: f64,
    /// The global bucket.
    global: Bucket,
    /// One bucket per recently seen source.
    sources: HashMap<IpAddr, Bucket>,
    /// Bound on `sources`.
    max_sources: usize,
}

impl RateLimiter {
    /// A limiter with the given rates (0 = unlimited); the global burst is one second's worth.
    pub fn new(
        per_source_rate: u32,
        per_source_burst: u32,
        global_rate: u32,
        max_sources: usize,
        now: Instant,
    ) -> Self {
        RateLimiter {
            per_source_rate: f64::from(per_source_rate),
            per_source_burst: f64::from(per_source_burst.max(1)),
            global_rate: f64::from(global_rate),
            global: Bucket::full(f64::from(global_rate), now),
            sources: HashMap::with_capacity(max_sources.min(4096)),
            max_sources,
        }
    }

    /// Sources tracked now (at most the `max_sources` it was given).
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Whether a reply to `ip` may be sent at `now`; `Err` says which limit refused it.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), DropReason> {
        if self.per_source_rate > 0.0 {
            let (rate, burst) = (self.per_source_rate, self.per_source_burst);
            if !self.sources.contains_key(&ip) && self.sources.len() >= self.max_sources {
                self.sources
                    .retain(|_, bucket| !bucket.is_full(rate, burst, now));
            }
            if self.sources.len() < self.max_sources || self.sources.contains_key(&ip) {
                let bucket = self
                    .sources
                    .entry(ip)
                    .or_insert_with(|| Bucket::full(burst, now));
                if !bucket.take(rate, burst, now) {
                    return Err(DropReason::SourceRate);
                }
            }
        }
        if self.global_rate > 0.0 && !self.global.take(self.global_rate, self.global_rate, now) {
            return Err(DropReason::GlobalRate);
        }
        Ok(())
    }

    /// New rates, burst and table bound for replies from now on; the buckets of tracked
    /// sources are kept (clamped to a smaller burst as they refill).
    pub fn reconfigure(
        &mut self,
        per_source_rate: u32,
        per_source_burst: u32,
        global_rate: u32,
        max_sources: usize,
    ) {
        self.per_source_rate = f64::from(per_source_rate);
        self.per_source_burst = f64::from(per_source_burst.max(1));
        self.global_rate = f64::from(global_rate);
        self.max_sources = max_sources;
        if self.sources.len() > max_sources {
            self.sources.clear();
        }
    }

    /// Sources currently tracked.
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn connection_cap_leaves_descriptors_for_the_admin_port() {
        assert_eq!(connection_cap(4096, 1_048_576, 32), 4096);
        assert_eq!(connection_cap(4096, 1024, 0), 1024 - FD_RESERVE as usize);
        assert_eq!(
            connection_cap(4096, 1024, 32),
            1024 - FD_RESERVE as usize - 32
        );
        assert_eq!(connection_cap(4096, 10, 32), 1);
    }

    #[test]
    fn loop_guard_drops_privileged_nfs_and_own_ports() {
        assert_eq!(
            loop_guard(addr("127.0.0.1:19"), &[7], &[]),
            Some(DropReason::LoopPort)
        );
        assert_eq!(
            loop_guard(addr("127.0.0.1:0"), &[7], &[]),
            Some(DropReason::LoopPort)
        );
        assert_eq!(
            loop_guard(addr("127.0.0.1:1023"), &[7], &[]),
            Some(DropReason::LoopPort)
        );
        assert_eq!(
            loop_guard(addr("127.0.0.1:2049"), &[7], &[]),
            Some(DropReason::LoopPort)
        );
        assert_eq!(
            loop_guard(addr("127.0.0.1:7007"), &[7007], &[]),
            Some(DropReason::LoopPort)
        );
        assert_eq!(
            loop_guard(addr("[::1]:7"), &[7], &[]),
            Some(DropReason::LoopPort)
        );
        assert_eq!(loop_guard(addr("127.0.0.1:1024"), &[7], &[]), None);
        assert_eq!(loop_guard(addr("[::1]:40000"), &[7], &[]), None);
        assert_eq!(
            loop_guard(addr("127.0.0.1:7013"), &[7007], &[7013]),
            Some(DropReason::LoopPort),
            "another service of the set"
        );
    }

    #[test]
    fn loop_guard_drops_non_unicast_sources() {
        for source in [
            "255.255.255.255:5000",
            "224.0.0.1:5000",
            "0.0.0.0:5000",
            "[ff02::1]:5000",
            "[::]:5000",
            "[::ffff:255.255.255.255]:5000",
        ] {
            assert_eq!(
                loop_guard(addr(source), &[7], &[]),
                Some(DropReason::NotUnicast),
                "{source}"
            );
        }
    }

    #[test]
    fn source_counter_caps_each_address_and_releases_on_drop() {
        let counter = SourceCounter::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let a = counter.try_acquire(ip).unwrap();
        let _b = counter.try_acquire(ip).unwrap();
        assert!(counter.try_acquire(ip).is_none());
        assert!(counter.try_acquire(other).is_some());
        drop(a);
        assert_eq!(counter.held(ip), 1);
        assert!(counter.try_acquire(ip).is_some());
    }

    #[test]
    fn source_counter_treats_mapped_ipv4_as_ipv4() {
        let counter = SourceCounter::new(1);
        let _slot = counter.try_acquire("127.0.0.1".parse().unwrap()).unwrap();
        assert!(counter
            .try_acquire("::ffff:127.0.0.1".parse().unwrap())
            .is_none());
    }

    #[test]
    fn per_source_rate_allows_burst_then_refills() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10, 5, 0, 100, start);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(limiter.check(ip, start), Ok(()));
        }
        assert_eq!(limiter.check(ip, start), Err(DropReason::SourceRate));
        // Another source is unaffected.
        assert_eq!(limiter.check("10.0.0.2".parse().unwrap(), start), Ok(()));
        // 10/s: one token back after 100 ms.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.check(ip, later), Ok(()));
        assert_eq!(limiter.check(ip, later), Err(DropReason::SourceRate));
    }

    #[test]
    fn global_rate_limits_all_sources_together() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(0, 1, 3, 100, start);
        for i in 1..=3u8 {
            assert_eq!(limiter.check(IpAddr::from([10, 0, 0, i]), start), Ok(()));
        }
        assert_eq!(
            limiter.check("10.0.0.9".parse().unwrap(), start),
            Err(DropReason::GlobalRate)
        );
    }

    #[test]
    fn source_table_stays_bounded_under_many_sources() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(1, 1, 0, 16, start);
        for i in 0..1000u32 {
            let _ = limiter.check(IpAddr::from(i.to_be_bytes()), start);
            assert!(limiter.tracked_sources() <= 16);
        }
        // Once the buckets refill, old sources are forgotten and new ones are tracked again.
        let later = start + Duration::from_secs(2);
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(limiter.check(ip, later), Ok(()));
        assert_eq!(limiter.check(ip, later), Err(DropReason::SourceRate));
    }

    #[test]
    fn the_deny_list_matches_addresses_and_prefixes_mapped_or_not() {
        let list = DenyList::parse("10.0.0.7, 192.168.0.0/16,fd00::/8").unwrap();
        assert!(list.denies("10.0.0.7".parse().unwrap()));
        assert!(list.denies("::ffff:10.0.0.7".parse().unwrap()));
        assert!(list.denies("192.168.3.4".parse().unwrap()));
        assert!(list.denies("fd12::1".parse().unwrap()));
        assert!(!list.denies("10.0.0.8".parse().unwrap()));
        assert!(!DenyList::parse("none")
            .unwrap()
            .denies("10.0.0.7".parse().unwrap()));
        let error = DenyList::parse("10.0.0.7,nonsense").unwrap_err();
        assert!(error.contains("`nonsense`"), "{error}");
    }
}
