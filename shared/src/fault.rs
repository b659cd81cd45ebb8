//! Fault injection, for operator training: break a service on purpose, watch the
//! symptoms, find and fix the cause (docs/faults.md, docs/training/).
//!
//! Faults are set at start (the `faults` key) or at run time through the admin API under
//! `/admin/` (off unless `admin_api` is on, and then only with the bearer token). Each has
//! an optional expiry, shows as `inetsvc_fault_active{fault}` and is logged when set and
//! cleared. One syntax everywhere — config, environment, API and `inetsvc fault`:
//! `NAME[:PARAM=VALUE,…]`, several separated by `;`, e.g.
//! `latency:delay=200ms,jitter=50ms,for=10m; udp_drop:probability=0.3`.
//!
//! The hot paths ask [`Faults::any`] first: with no fault set, the whole mechanism costs
//! one relaxed atomic load per reply.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::IntGaugeVec;

use crate::clock::Clock;
use crate::config::{ConfigError, Key, Settings};

/// The keys of fault injection and of the admin API that drives it.
pub const FAULT_KEYS: &[Key] = &[
    Key {
        name: "faults",
        default: "",
        help: "Faults active from the start, `;`-separated NAME[:PARAM=VALUE,…] (`latency:delay=200ms,for=10m`); see docs/faults.md",
    },
    Key {
        name: "admin_api",
        default: "false",
        help: "Serve the state-changing admin API under /admin/ (fault injection); requires admin_token or admin_token_file",
    },
    Key {
        name: "admin_token",
        default: "",
        help: "Bearer token the /admin/ API requires, at least 16 characters; prefer admin_token_file or INETSVC_ADMIN_TOKEN over a flag",
    },
    Key {
        name: "admin_token_file",
        default: "",
        help: "File holding the /admin/ bearer token (a mounted Secret); surrounding whitespace is ignored",
    },
];

/// Shortest token accepted: long enough that guessing is not an attack.
const MIN_TOKEN_LEN: usize = 16;

/// Longest a CPU or memory load may last, and how long it lasts when no `for` is given:
/// a forgotten load must not burn a shared training cluster for ever.
const LOAD_MAX: Duration = Duration::from_secs(3600);
const LOAD_DEFAULT: Duration = Duration::from_secs(600);

/// Largest memory load, MiB: enough to show on a dashboard, too little to take a node down.
const MEMORY_MAX_MIB: u64 = 1024;

/// How long a held (reordered) UDP reply waits for a later reply to overtake it.
const REORDER_HOLD: Duration = Duration::from_secs(1);

/// 2036-02-07T06:28:16Z, when the RFC 868 TIME counter wraps to zero.
pub const TIME_WRAP_UNIX: u64 = 2_085_978_496;

/// One parameter of a fault: name, default and help.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name in `NAME:PARAM=VALUE`.
    pub name: &'static str,
    /// Value when not given.
    pub default: &'static str,
    /// One line for docs and `inetsvc fault list --all`.
    pub help: &'static str,
}

const fn param(name: &'static str, default: &'static str, help: &'static str) -> Param {
    Param {
        name,
        default,
        help,
    }
}

const PROBABILITY: Param = param("probability", "1", "chance per connection or reply, 0 to 1");

macro_rules! kinds {
    ($($kind:ident $name:literal $about:literal [$($param:expr),*];)*) => {
        /// Every fault the services can inject.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FaultKind { $($kind),* }

        impl FaultKind {
            /// Every kind, in the order the docs list them.
            pub const ALL: &'static [FaultKind] = &[$(FaultKind::$kind),*];

            /// The name in specs, the API path and the `fault` metric label.
            pub fn name(self) -> &'static str {
                match self { $(FaultKind::$kind => $name),* }
            }

            /// What it does, one line.
            pub fn about(self) -> &'static str {
                match self { $(FaultKind::$kind => $about),* }
            }

            /// Its parameters (besides `for`).
            pub fn params(self) -> &'static [Param] {
                match self { $(FaultKind::$kind => { const PARAMS: &[Param] = &[$($param),*]; PARAMS }),* }
            }
        }
    };
}

kinds! {
    Latency "latency" "wait delay plus a random part of jitter before every reply (TCP writes and UDP answers)"
        [param("delay", "200ms", "fixed wait"), param("jitter", "0s", "extra wait, uniform from 0 to this")];
    TcpRefuse "tcp_refuse" "refuse TCP connections with a reset as soon as they are accepted"
        [PROBABILITY];
    TcpReset "tcp_reset" "reset TCP connections mid-stream, once they have sent after_bytes"
        [PROBABILITY, param("after_bytes", "0", "reply bytes sent before the reset")];
    SlowClose "slow_close" "hold every TCP connection open this long after its last reply before closing"
        [param("delay", "5s", "wait before the close")];
    Bandwidth "bandwidth" "limit every TCP connection's replies to this many bytes per second"
        [param("bytes_per_second", "1024", "rate, at least 1")];
    Truncate "truncate" "cut replies after max_bytes (a UDP answer, or everything a TCP connection sends; then FIN)"
        [param("max_bytes", "2", "bytes kept")];
    Corrupt "corrupt" "invert one random byte of a reply"
        [PROBABILITY];
    UdpDrop "udp_drop" "drop UDP requests unanswered (counted as reason=\"fault\")"
        [PROBABILITY];
    UdpDuplicate "udp_duplicate" "send UDP answers twice"
        [PROBABILITY];
    UdpDelay "udp_delay" "send UDP answers late, without holding up the others"
        [PROBABILITY, param("delay", "500ms", "fixed delay"), param("jitter", "0s", "extra delay, uniform from 0 to this")];
    UdpReorder "udp_reorder" "hold a UDP answer until the next one has been sent (at most 1 s)"
        [PROBABILITY];
    ClockOffset "clock_offset" "DAYTIME and TIME report the time shifted by offset (negative: behind)"
        [param("offset", "30s", "shift, e.g. 30s, -2m")];
    ClockDrift "clock_drift" "the reported time drifts from the moment the fault is set"
        [param("ppm", "1000", "drift in parts per million, negative: slow")];
    ClockFreeze "clock_freeze" "the reported time stops at the moment the fault is set"
        [];
    ClockWrap "clock_wrap" "the reported time jumps to just before the TIME counter wraps (2036-02-07T06:28:16Z) and runs on"
        [param("before", "60s", "how long before the wrap")];
    NotReady "not_ready" "/readyz answers 503: load balancers and Kubernetes stop sending traffic"
        [];
    NotLive "not_live" "/healthz answers 503: Kubernetes restarts the container"
        [];
    CpuLoad "cpu_load" "burn CPU on threads threads at duty cycle duty (bounded: at most the cores, at most 1 h)"
        [param("threads", "1", "busy threads, at most the number of cores"), param("duty", "0.5", "busy fraction, 0.01 to 1")];
    MemoryLoad "memory_load" "hold this much touched memory (bounded: at most 1024 MiB, at most 1 h)"
        [param("mib", "256", "MiB, 1 to 1024")];
}

impl FaultKind {
    /// The kind named `name`, or an error listing them all.
    pub fn parse(name: &str) -> Result<Self, String> {
        FaultKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault `{name}`; known: {}", known.join(", "))
            })
    }

    /// Loads that run until stopped, and therefore always expire.
    fn is_load(self) -> bool {
        matches!(self, FaultKind::CpuLoad | FaultKind::MemoryLoad)
    }
}

/// A fault with its parameters checked and resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// See [`FaultKind::Latency`].
    Latency { delay: Duration, jitter: Duration },
    /// See [`FaultKind::TcpRefuse`].
    TcpRefuse { probability: f64 },
    /// See [`FaultKind::TcpReset`].
    TcpReset { probability: f64, after_bytes: u64 },
    /// See [`FaultKind::SlowClose`].
    SlowClose { delay: Duration },
    /// See [`FaultKind::Bandwidth`].
    Bandwidth { bytes_per_second: u64 },
    /// See [`FaultKind::Truncate`].
    Truncate { max_bytes: u64 },
    /// See [`FaultKind::Corrupt`].
    Corrupt { probability: f64 },
    /// See [`FaultKind::UdpDrop`].
    UdpDrop { probability: f64 },
    /// See [`FaultKind::UdpDuplicate`].
    UdpDuplicate { probability: f64 },
    /// See [`FaultKind::UdpDelay`].
    UdpDelay {
        probability: f64,
        delay: Duration,
        jitter: Duration,
    },
    /// See [`FaultKind::UdpReorder`].
    UdpReorder { probability: f64 },
    /// See [`FaultKind::ClockOffset`]; nanoseconds, signed.
    ClockOffset { offset_ns: i128 },
    /// See [`FaultKind::ClockDrift`].
    ClockDrift { ppm: f64 },
    /// See [`FaultKind::ClockFreeze`].
    ClockFreeze,
    /// See [`FaultKind::ClockWrap`].
    ClockWrap { before: Duration },
    /// See [`FaultKind::NotReady`].
    NotReady,
    /// See [`FaultKind::NotLive`].
    NotLive,
    /// See [`FaultKind::CpuLoad`].
    CpuLoad { threads: usize, duty: f64 },
    /// See [`FaultKind::MemoryLoad`].
    MemoryLoad { mib: u64 },
}

impl Fault {
    /// The chance it strikes each connection or reply; 1 for faults that always act.
    fn probability(&self) -> f64 {
        match *self {
            Fault::TcpRefuse { probability }
            | Fault::TcpReset { probability, .. }
            | Fault::Corrupt { probability }
            | Fault::UdpDrop { probability }
            | Fault::UdpDuplicate { probability }
            | Fault::UdpDelay { probability, .. }
            | Fault::UdpReorder { probability } => probability,
            _ => 1.0,
        }
    }
}

/// A fault to set: what, with which parameters (as text, for logs and the API), for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRequest {
    /// Which fault.
    pub kind: FaultKind,
    /// Its checked value.
    pub fault: Fault,
    /// Every parameter, given or defaulted, as `name=value`.
    pub params: Vec<(&'static str, String)>,
    /// How long it lasts; `None`: until cleared.
    pub lasts: Option<Duration>,
}

/// Prefixes a parameter's error with the fault and the parameter.
fn checked<T>(name: &str, key: &str, result: Result<T, String>) -> Result<T, String> {
    result.map_err(|reason| format!("{name}: {key}: {reason}"))
}

/// Parses a duration such as `200ms` or `-30s` into signed nanoseconds.
fn signed_duration(text: &str) -> Result<i128, String> {
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let duration = humantime::parse_duration(magnitude.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write 200ms, 30s, -2m"))?;
    Ok(sign * duration.as_nanos() as i128)
}

fn duration(text: &str) -> Result<Duration, String> {
    let ns = signed_duration(text)?;
    if ns < 0 {
        return Err(format!("`{text}` must not be negative"));
    }
    Ok(Duration::from_nanos(ns.min(u64::MAX as i128) as u64))
}

fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{text}` is not a probability from 0 to 1")),
    }
}

fn whole(text: &str, min: u64, max: u64) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{text}` is not a whole number from {min} to {max}"
        )),
    }
}

impl FaultRequest {
    /// Builds a request for `kind` from `PARAM=VALUE` pairs separated by commas (`for`
    /// sets the expiry). Errors name the fault and the parameter.
    pub fn parse(kind: FaultKind, params: &str) -> Result<Self, String> {
        let name = kind.name();
        let mut given: BTreeMap<&str, &str> = BTreeMap::new();
        for pair in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{name}: `{pair}` is not PARAM=VALUE"))?;
            let (key, value) = (key.trim(), value.trim());
            if key != "for" && !kind.params().iter().any(|p| p.name == key) {
                let mut known: Vec<&str> = kind.params().iter().map(|p| p.name).collect();
                known.push("for");
                return Err(format!(
                    "{name}: unknown parameter `{key}`; known: {}",
                    known.join(", ")
                ));
            }
            if given.insert(key, value).is_some() {
                return Err(format!("{name}: parameter `{key}` given twice"));
            }
        }
        let resolved: Vec<(&'static str, String)> = kind
            .params()
            .iter()
            .map(|p| (p.name, given.get(p.name).unwrap_or(&p.default).to_string()))
            .collect();
        let get = |key: &str| -> &str {
            resolved
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let dur = |key: &str| checked(name, key, duration(get(key)));
        let prob = || checked(name, "probability", probability(get("probability")));
        let fault = match kind {
            FaultKind::Latency => Fault::Latency {
                delay: dur("delay")?,
                jitter: dur("jitter")?,
            },
            FaultKind::TcpRefuse => Fault::TcpRefuse {
                probability: prob()?,
            },
            FaultKind::TcpReset => Fault::TcpReset {
                probability: prob()?,
                after_bytes: checked(name, "after_bytes", whole(get("after_bytes"), 0, u64::MAX))?,
            },
            FaultKind::SlowClose => Fault::SlowClose {
                delay: dur("delay")?,
            },
            FaultKind::Bandwidth => Fault::Bandwidth {
                bytes_per_second: checked(
                    name,
                    "bytes_per_second",
                    whole(get("bytes_per_second"), 1, u64::MAX),
                )?,
            },
            FaultKind::Truncate => Fault::Truncate {
                max_bytes: checked(name, "max_bytes", whole(get("max_bytes"), 0, u64::MAX))?,
            },
            FaultKind::Corrupt => Fault::Corrupt {
                probability: prob()?,
            },
            FaultKind::UdpDrop => Fault::UdpDrop {
                probability: prob()?,
            },
            FaultKind::UdpDuplicate => Fault::UdpDuplicate {
                probability: prob()?,
            },
            FaultKind::UdpDelay => Fault::UdpDelay {
                probability: prob()?,
                delay: dur("delay")?,
                jitter: dur("jitter")?,
            },
            FaultKind::UdpReorder => Fault::UdpReorder {
                probability: prob()?,
            },
            FaultKind::ClockOffset => Fault::ClockOffset {
                offset_ns: checked(name, "offset", signed_duration(get("offset")))?,
            },
            FaultKind::ClockDrift => Fault::ClockDrift {
                ppm: checked(
                    name,
                    "ppm",
                    get("ppm")
                        .parse::<f64>()
                        .ok()
                        .filter(|ppm| ppm.abs() <= 1e6)
                        .ok_or_else(|| {
                            format!("`{}` is not a number from -1e6 to 1e6", get("ppm"))
                        }),
                )?,
            },
            FaultKind::ClockFreeze => Fault::ClockFreeze,
            FaultKind::ClockWrap => Fault::ClockWrap {
                before: dur("before")?,
            },
            FaultKind::NotReady => Fault::NotReady,
            FaultKind::NotLive => Fault::NotLive,
            FaultKind::CpuLoad => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                Fault::CpuLoad {
                    threads: checked(name, "threads", whole(get("threads"), 1, cores as u64))?
                        as usize,
                    duty: checked(
                        name,
                        "duty",
                        get("duty")
                            .parse::<f64>()
                            .ok()
                            .filter(|d| (0.01..=1.0).contains(d))
                            .ok_or_else(|| {
                                format!("`{}` is not a fraction from 0.01 to 1", get("duty"))
                            }),
                    )?,
                }
            }
            FaultKind::MemoryLoad => Fault::MemoryLoad {
                mib: checked(name, "mib", whole(get("mib"), 1, MEMORY_MAX_MIB))?,
            },
        };
        let mut lasts = match given.get("for") {
            Some(text) => Some(checked(name, "for", duration(text))?),
            None => None,
        };
        if kind.is_load() {
            let bounded = lasts.unwrap_or(LOAD_DEFAULT);
            if bounded > LOAD_MAX {
                return Err(format!("{name}: for: a load lasts at most 1h"));
            }
            lasts = Some(bounded);
        }
        Ok(FaultRequest {
            kind,
            fault,
            params: resolved,
            lasts,
        })
    }

    /// Parses `NAME[:PARAM=VALUE,…]`.
    pub fn parse_spec(spec: &str) -> Result<Self, String> {
        let (name, params) = spec.trim().split_once(':').unwrap_or((spec.trim(), ""));
        FaultRequest::parse(FaultKind::parse(name.trim())?, params)
    }

    /// Parses `;`-separated specs; empty text is no fault.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(FaultRequest::parse_spec)
            .collect()
    }

    /// The parameters as `PARAM=VALUE,…`.
    pub fn params_text(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The admin API's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminApi {
    /// The bearer token every `/admin/` request must carry.
    pub token: String,
}

/// Reads `admin_api`, `admin_token` and `admin_token_file`: `None` when the API is off.
pub fn admin_api(settings: &Settings) -> Result<Option<AdminApi>, ConfigError> {
    if !settings.flag("admin_api")? {
        return Ok(None);
    }
    let file = settings.text("admin_token_file")?;
    let token = if !file.trim().is_empty() {
        std::fs::read_to_string(file.trim())
            .map_err(|e| {
                ConfigError::invalid(
                    "admin_token_file",
                    format!("cannot read `{}`: {e}", file.trim()),
                )
            })?
            .trim()
            .to_owned()
    } else {
        settings.text("admin_token")?.trim().to_owned()
    };
    let key = if file.trim().is_empty() {
        "admin_token"
    } else {
        "admin_token_file"
    };
    if token.is_empty() {
        return Err(ConfigError::invalid(
            "admin_api",
            "the admin API needs a bearer token: set admin_token_file (or INETSVC_ADMIN_TOKEN)",
        ));
    }
    if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            key,
            format!("the token must be at least {MIN_TOKEN_LEN} characters without spaces, e.g. from `openssl rand -hex 16`"),
        ));
    }
    Ok(Some(AdminApi { token }))
}

/// Reads the `faults` key.
pub fn initial_faults(settings: &Settings) -> Result<Vec<FaultRequest>, ConfigError> {
    settings.parse("faults", FaultRequest::parse_list)
}

/// Compares a presented token with the expected one in time independent of where they
/// differ, so that the token cannot be guessed byte by byte from response times.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A running CPU load: its threads stop when this is dropped.
#[derive(Debug)]
struct CpuBurn(Arc<AtomicBool>);

impl CpuBurn {
    fn start(threads: usize, duty: f64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        // 10 ms periods: fine enough for a smooth CPU graph, coarse enough to cost nothing
        // when idle.
        let period = Duration::from_millis(10);
        let busy = period.mul_f64(duty);
        for _ in 0..threads {
            let stop = Arc::clone(&stop);
            let spawned = std::thread::Builder::new()
                .name("fault-cpu".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        while start.elapsed() < busy {
                            std::hint::spin_loop();
                        }
                        std::thread::sleep(period.saturating_sub(busy));
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start a cpu_load thread");
            }
        }
        CpuBurn(stop)
    }
}

impl Drop for CpuBurn {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a load fault holds while it is set. Never read: holding it is the load, and
/// dropping it (clear, expiry, replacement) ends the load.
#[derive(Debug)]
enum Load {
    Cpu(#[allow(dead_code)] CpuBurn),
    Memory(#[allow(dead_code)] Vec<u8>),
}

fn start_load(fault: &Fault) -> Option<Load> {
    match *fault {
        Fault::CpuLoad { threads, duty } => Some(Load::Cpu(CpuBurn::start(threads, duty))),
        Fault::MemoryLoad { mib } => {
            // Filled, not just reserved, so that every page is resident and shows in RSS.
            Some(Load::Memory(vec![0xA5; (mib as usize) << 20]))
        }
        _ => None,
    }
}

/// One fault that is set.
#[derive(Debug)]
struct Entry {
    request: FaultRequest,
    /// Where it came from (`config`, `api`), for the logs and the API.
    origin: &'static str,
    set_at: Instant,
    set_wall: SystemTime,
    expires_at: Option<Instant>,
    _load: Option<Load>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// A UDP answer held back by `udp_reorder`.
#[derive(Debug)]
pub struct Held {
    /// The answer.
    pub reply: Vec<u8>,
    /// Where it goes.
    pub to: SocketAddr,
    generation: u64,
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
}

impl Faults {
    /// No fault set; `gauge` is the `inetsvc_fault_active` family and the service label.
    pub fn new(gauge: Option<(IntGaugeVec, &'static str)>) -> Self {
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
            generation: AtomicU64::new(0),
        }))
    }

    /// Whether any fault is set: the hot paths' fast check.
    #[inline]
    pub fn any(&self) -> bool {
        self.0.any.load(Ordering::Relaxed)
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<FaultKind, Entry>> {
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
    pub fn set(&self, request: FaultRequest, origin: &'static str) -> ActiveFault {
        let kind = request.kind;
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
        let shown = snapshot(kind, &entry, now);
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
            tracing::warn!(fault = kind.name(), reason, "fault cleared");
        }
        removed.is_some()
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
            .map(|(kind, entry)| snapshot(*kind, entry, now))
            .collect()
    }

    /// The fault of `kind`, if set and not expired.
    fn fault(&self, kind: FaultKind) -> Option<Fault> {
        if !self.any() {
            return None;
        }
        let table = self.table();
        let entry = table.get(&kind)?;
        entry.live(Instant::now()).then_some(entry.request.fault)
    }

    /// The fault of `kind`, if set and its probability strikes this time.
    fn strikes(&self, kind: FaultKind) -> Option<Fault> {
        self.fault(kind).filter(|fault| chance(fault.probability()))
    }

    /// `latency`: how long to wait before this reply.
    pub fn latency(&self) -> Option<Duration> {
        match self.fault(FaultKind::Latency)? {
            Fault::Latency { delay, jitter } => Some(delay + random_upto(jitter)),
            _ => None,
        }
    }

    /// `tcp_refuse`: whether to refuse this connection.
    pub fn refuse(&self) -> bool {
        self.strikes(FaultKind::TcpRefuse).is_some()
    }

    /// `tcp_reset`: after how many sent bytes to reset this connection, if at all.
    pub fn reset_after(&self) -> Option<u64> {
        match self.strikes(FaultKind::TcpReset)? {
            Fault::TcpReset { after_bytes, .. } => Some(after_bytes),
            _ => None,
        }
    }

    /// `slow_close`: how long to hold a connection before closing it.
    pub fn slow_close(&self) -> Option<Duration> {
        match self.fault(FaultKind::SlowClose)? {
            Fault::SlowClose { delay } => Some(delay),
            _ => None,
        }
    }

    /// `bandwidth`: the byte rate replies are held to.
    pub fn bandwidth(&self) -> Option<u64> {
        match self.fault(FaultKind::Bandwidth)? {
            Fault::Bandwidth { bytes_per_second } => Some(bytes_per_second),
            _ => None,
        }
    }

    /// `truncate`: how many reply bytes are kept.
    pub fn truncate(&self) -> Option<u64> {
        match self.fault(FaultKind::Truncate)? {
            Fault::Truncate { max_bytes } => Some(max_bytes),
            _ => None,
        }
    }

    /// `corrupt`: inverts one random byte of `reply` when the fault strikes.
    pub fn corrupt(&self, reply: &mut [u8]) {
        if !reply.is_empty() && self.strikes(FaultKind::Corrupt).is_some() {
            let at = fastrand::usize(..reply.len());
            reply[at] = !reply[at];
        }
    }

    /// `udp_drop`: whether to drop this request.
    pub fn udp_drop(&self) -> bool {
        self.strikes(FaultKind::UdpDrop).is_some()
    }

    /// `udp_duplicate`: whether to send this answer twice.
    pub fn udp_duplicate(&self) -> bool {
        self.strikes(FaultKind::UdpDuplicate).is_some()
    }

    /// `udp_delay`: how late to send this answer.
    pub fn udp_delay(&self) -> Option<Duration> {
        match self.strikes(FaultKind::UdpDelay)? {
            Fault::UdpDelay { delay, jitter, .. } => Some(delay + random_upto(jitter)),
            _ => None,
        }
    }

    /// `udp_reorder`: whether to hold this answer back.
    pub fn udp_reorder(&self) -> bool {
        self.strikes(FaultKind::UdpReorder).is_some()
    }

    /// Holds an answer back unless one is held already (then `None`: send it now); the
    /// number returned lets a timer release exactly this one later.
    pub fn hold(&self, reply: &[u8], to: SocketAddr) -> Option<u64> {
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
    pub fn take_held(&self, generation: Option<u64>) -> Option<Held> {
        let mut held = self.0.held.lock().unwrap_or_else(|p| p.into_inner());
        match (&*held, generation) {
            (Some(h), Some(g)) if h.generation != g => None,
            _ => held.take(),
        }
    }

    /// How long a held answer waits for another to overtake it.
    pub fn hold_time(&self) -> Duration {
        REORDER_HOLD
    }

    /// `not_ready`: whether `/readyz` must fail.
    pub fn not_ready(&self) -> bool {
        self.fault(FaultKind::NotReady).is_some()
    }

    /// `not_live`: whether `/healthz` must fail.
    pub fn not_live(&self) -> bool {
        self.fault(FaultKind::NotLive).is_some()
    }
}

impl Clock for Faults {
    /// The system time with the clock faults applied: freeze or wrap fix the base, drift
    /// grows from when it was set, offset shifts the result.
    fn now(&self) -> SystemTime {
        let mut now = SystemTime::now();
        if !self.any() {
            return now;
        }
        // One look at the table for all four clock faults.
        let table = self.table();
        let instant = Instant::now();
        let live = |kind| table.get(&kind).filter(|entry| entry.live(instant));
        if let Some(entry) = live(FaultKind::ClockFreeze) {
            now = entry.set_wall;
        } else if let Some(entry) = live(FaultKind::ClockWrap) {
            if let Fault::ClockWrap { before } = entry.request.fault {
                let wrap = UNIX_EPOCH + Duration::from_secs(TIME_WRAP_UNIX);
                now = wrap.checked_sub(before).unwrap_or(wrap) + entry.set_at.elapsed();
            }
        }
        if let Some(entry) = live(FaultKind::ClockDrift) {
            if let Fault::ClockDrift { ppm } = entry.request.fault {
                let drift = entry.set_at.elapsed().as_nanos() as f64 * ppm / 1e6;
                now = shift(now, drift as i128);
            }
        }
        if let Some(entry) = live(FaultKind::ClockOffset) {
            if let Fault::ClockOffset { offset_ns } = entry.request.fault {
                now = shift(now, offset_ns);
            }
        }
        now
    }
}

fn shift(time: SystemTime, ns: i128) -> SystemTime {
    let magnitude = Duration::from_nanos(ns.unsigned_abs().min(u64::MAX as u128) as u64);
    let shifted = if ns >= 0 {
        time.checked_add(magnitude)
    } else {
        time.checked_sub(magnitude)
    };
    shifted.unwrap_or(time)
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
    }
}

fn chance(probability: f64) -> bool {
    probability >= 1.0 || fastrand::f64() < probability
}

fn random_upto(max: Duration) -> Duration {
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
    fn specs_parse_with_defaults_and_expiry() {
        let list = FaultRequest::parse_list(
            "latency:delay=20ms,for=5s ; udp_drop:probability=0.25;not_ready",
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(
            list[0].fault,
            Fault::Latency {
                delay: Duration::from_millis(20),
                jitter: Duration::ZERO
            }
        );
        assert_eq!(list[0].lasts, Some(Duration::from_secs(5)));
        assert_eq!(list[0].params_text(), "delay=20ms,jitter=0s");
        assert_eq!(list[1].fault, Fault::UdpDrop { probability: 0.25 });
        assert_eq!(list[2].lasts, None);
        assert!(FaultRequest::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn bad_specs_name_the_fault_and_the_parameter() {
        let error = |spec: &str| FaultRequest::parse_spec(spec).unwrap_err();
        assert!(error("nosuch").contains("unknown fault `nosuch`; known: latency"));
        assert!(error("latency:delai=1s").contains("latency: unknown parameter `delai`"));
        assert!(error("udp_drop:probability=2").contains("udp_drop: probability: `2`"));
        assert!(error("latency:delay=-1s").contains("must not be negative"));
        assert!(error("latency:delay").contains("not PARAM=VALUE"));
        assert!(error("memory_load:mib=4096").contains("memory_load: mib"));
        assert!(error("cpu_load:for=2h").contains("at most 1h"));
        assert!(error("latency:delay=1s,delay=2s").contains("given twice"));
    }

    #[test]
    fn loads_always_expire() {
        let load = FaultRequest::parse_spec("memory_load:mib=1").unwrap();
        assert_eq!(load.lasts, Some(LOAD_DEFAULT));
    }

    #[test]
    fn clock_offsets_take_a_sign() {
        let behind = FaultRequest::parse_spec("clock_offset:offset=-2m").unwrap();
        assert_eq!(
            behind.fault,
            Fault::ClockOffset {
                offset_ns: -120_000_000_000
            }
        );
    }

    #[test]
    fn clock_faults_shift_freeze_and_wrap() {
        let faults = Faults::new(None);
        let real = SystemTime::now();
        faults.set(
            FaultRequest::parse_spec("clock_offset:offset=-1h").unwrap(),
            "test",
        );
        let shifted = faults.now();
        let behind = real.duration_since(shifted).unwrap();
        assert!(behind > Duration::from_secs(3599) && behind < Duration::from_secs(3601));
        faults.clear_all();
        faults.set(
            FaultRequest::parse_spec("clock_wrap:before=10s").unwrap(),
            "test",
        );
        let unix = faults.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(
            (TIME_WRAP_UNIX - 10..TIME_WRAP_UNIX).contains(&unix),
            "{unix}"
        );
        faults.clear_all();
        faults.set(FaultRequest::parse_spec("clock_freeze").unwrap(), "test");
        let frozen = faults.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(faults.now(), frozen);
        faults.clear_all();
        assert!(faults.now() > frozen);
    }

    #[test]
    fn expiry_clears_and_any_follows_the_table() {
        let faults = Faults::new(None);
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

    #[test]
    fn held_answers_are_released_once() {
        let faults = Faults::new(None);
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let first = faults.hold(b"a", to).unwrap();
        assert_eq!(faults.hold(b"b", to), None, "one answer held at a time");
        assert!(faults.take_held(Some(first + 1)).is_none());
        assert_eq!(faults.take_held(Some(first)).unwrap().reply, b"a");
        assert!(faults.take_held(None).is_none());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!token_matches(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!token_matches(b"0123456789abcde", b"0123456789abcdef"));
    }
}

#[cfg(test)]
mod docs {
    use super::*;

    /// docs/faults.md lists every fault with every parameter and its default.
    #[test]
    fn every_fault_is_documented() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/faults.md");
        let docs = std::fs::read_to_string(path).unwrap();
        for kind in FaultKind::ALL {
            let row = docs
                .lines()
                .find(|line| line.starts_with(&format!("| `{}` |", kind.name())))
                .unwrap_or_else(|| panic!("docs/faults.md has no row for {}", kind.name()));
            for param in kind.params() {
                let shown = format!("`{}` ({}", param.name, param.default);
                assert!(
                    row.contains(&shown),
                    "{}: {shown} missing in `{row}`",
                    kind.name()
                );
            }
        }
    }
}
