//! The fault catalogue: every fault there is, its parameters, and the one parser for the
//! `NAME[:PARAM=VALUE,…]` syntax shared by the `faults` key, the admin API and
//! `inetsvc fault` (docs/faults.md).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{one_line, ConfigError, Key, Settings};

/// The keys of fault injection: faults set from the start, and the two settings the
/// training scenarios tie a fault to, so that an operator's remedy (switching the time
/// source, rolling back) is a real configuration change (docs/training/README.md).
pub const FAULT_KEYS: &[Key] = &[
    Key::new(
        "faults",
        "",
        "Faults active from the start, `;`-separated NAME[:PARAM=VALUE,…] (`latency:delay=200ms,for=10m`); see docs/faults.md",
    )
    .live(),
    Key::new(
        "time_source",
        "primary",
        "Upstream time source the clock follows, `primary` or `secondary`: training's stand-in for two NTP servers (both are the system clock unless a fault tied to one with `when=time_source=primary` skews it)",
    )
    .live(),
    Key::new(
        "release",
        "stable",
        "Label of the rollout in force (letters, digits, `.`, `_`, `-`): training's stand-in for a deployment, to which a fault can be tied with `when=release=LABEL`; rolling back is setting it back",
    )
    .live(),
];

/// Checks `time_source` and `release`.
pub fn check_training_keys(settings: &Settings) -> Result<(), ConfigError> {
    settings.parse("time_source", |text| match text {
        "primary" | "secondary" => Ok(()),
        _ => Err(format!(
            "`{text}` is not a time source; write `primary` or `secondary`"
        )),
    })?;
    settings.parse("release", |text| {
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if (1..=64).contains(&text.len()) && text.chars().all(fine) {
            Ok(())
        } else {
            Err(format!(
                "`{text}` is not a release label: 1 to 64 letters, digits, `.`, `_`, `-`"
            ))
        }
    })
}

/// Longest a CPU or memory load may last, and how long it lasts when no `for` is given:
/// a forgotten load must not burn a shared training cluster for ever.
const LOAD_MAX: Duration = Duration::from_secs(3600);
const LOAD_DEFAULT: Duration = Duration::from_secs(600);

/// Largest memory load, MiB: enough to show on a dashboard, too little to take a node down.
pub(super) const MEMORY_MAX_MIB: u64 = 1024;

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
        Self::parse_name(name).map_err(|reason| one_line(&reason))
    }

    fn parse_name(name: &str) -> Result<Self, String> {
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
    pub(super) fn is_load(self) -> bool {
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
    pub(super) fn probability(&self) -> f64 {
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
    /// `when=KEY=VALUE`: in effect only while the setting `KEY` is `VALUE`.
    pub when: Option<(String, String)>,
}

/// Prefixes a parameter's error with the fault and the parameter.
fn checked<T>(name: &str, key: &str, result: Result<T, String>) -> Result<T, String> {
    result.map_err(|reason| format!("{name}: {key}: {reason}"))
}

/// Longest duration any fault parameter takes (`for`, delays, offsets): past it a value is
/// refused, never clamped, so the API never shows a value the service does not apply.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses a duration such as `200ms` or `-30s` into signed nanoseconds, at most
/// [`LONGEST`] either way.
fn signed_duration(text: &str) -> Result<i128, String> {
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let duration = humantime::parse_duration(magnitude.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write 200ms, 30s, -2m"))?;
    if duration > LONGEST {
        return Err(format!(
            "`{text}` is longer than the 100 years a fault parameter may be"
        ));
    }
    Ok(sign * duration.as_nanos() as i128)
}

fn duration(text: &str) -> Result<Duration, String> {
    let ns = signed_duration(text)?;
    if ns < 0 {
        return Err(format!("`{text}` must not be negative"));
    }
    // At most LONGEST, so it fits.
    Ok(Duration::from_nanos(ns as u64))
}

/// `KEY=VALUE`: a setting's name and the value it must have.
fn condition(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value))
            if !key.is_empty()
                && !value.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
        {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "`{text}` is not KEY=VALUE, e.g. when=time_source=primary"
        )),
    }
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
    /// sets the expiry). Errors name the fault and the parameter, on one line whatever
    /// the text holds.
    pub fn parse(kind: FaultKind, params: &str) -> Result<Self, String> {
        Self::parse_params(kind, params).map_err(|reason| one_line(&reason))
    }

    fn parse_params(kind: FaultKind, params: &str) -> Result<Self, String> {
        let name = kind.name();
        let mut given: BTreeMap<&str, &str> = BTreeMap::new();
        for pair in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{name}: `{pair}` is not PARAM=VALUE"))?;
            let (key, value) = (key.trim(), value.trim());
            if key != "for" && key != "when" && !kind.params().iter().any(|p| p.name == key) {
                let mut known: Vec<&str> = kind.params().iter().map(|p| p.name).collect();
                known.extend(["for", "when"]);
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
        let when = match given.get("when") {
            Some(text) => Some(checked(name, "when", condition(text))?),
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
            when,
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

    /// The parameters as `PARAM=VALUE,…`, the condition last.
    pub fn params_text(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(self.when.iter().map(|(k, v)| format!("when={k}={v}")))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Reads the `faults` key (and checks the training keys beside it); a `when=` must name
/// a key the service has.
pub fn initial_faults(settings: &Settings) -> Result<Vec<FaultRequest>, ConfigError> {
    check_training_keys(settings)?;
    let requests = settings.parse("faults", FaultRequest::parse_list)?;
    for request in &requests {
        if let Some((key, _)) = &request.when {
            if !settings.keys().any(|k| k.name == key) {
                return Err(ConfigError::invalid(
                    "faults",
                    format!("{}: when: no key `{key}`", request.kind.name()),
                ));
            }
        }
    }
    Ok(requests)
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
        // Found by the cargo-fuzz target fault_spec: control characters in the text were
        // quoted as they came, so the error spread over two lines.
        let quoted = error("2\u{2}\n[");
        assert!(
            !quoted.contains('\n') && quoted.contains("\\u{2}\\n["),
            "{quoted}"
        );
        assert!(error("not_ready:for=1000000000y").contains("longer than the 100 years"));
        assert!(error("clock_offset:offset=-2000y").contains("longer than the 100 years"));
        assert!(FaultRequest::parse_spec("clock_offset:offset=-99y").is_ok());
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

    #[test]
    fn a_condition_ties_a_fault_to_a_setting() {
        let request =
            FaultRequest::parse_spec("clock_offset:offset=45s,when=time_source=primary").unwrap();
        assert_eq!(request.when, Some(("time_source".into(), "primary".into())));
        assert!(request.params_text().ends_with(",when=time_source=primary"));
        let error = FaultRequest::parse_spec("clock_offset:when=primary").unwrap_err();
        assert!(
            error.contains("clock_offset: when: `primary` is not KEY=VALUE"),
            "{error}"
        );
    }
}
