//! `inetsvc probe`: checks every service over TCP and UDP — the answer is right, how long
//! it took, and for DAYTIME and TIME how far the server's clock is from ours — and says
//! so as a table, JSON, or Prometheus text for a one-shot container or Kubernetes Job.

use std::fmt::Write as _;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, Utc};
use inetsvc_proto::daytime;

use crate::client::{self, ClientError, Options, Reply, Transport};
use crate::target::{Service, Target};

/// Why a check failed: the `reason` label of `inetsvc_probe_failure`, so that an alert
/// can tell a wrong clock from no answer, and a page can say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The name did not resolve.
    Resolve,
    /// Nothing listens (TCP reset, ICMP port unreachable).
    Refused,
    /// No answer in time, or none within the probe's budget.
    Timeout,
    /// A TIME answer that is not four bytes.
    WrongLength,
    /// An ECHO answer that differs from what was sent.
    Mismatch,
    /// A DAYTIME answer that is not one ASCII line.
    NotALine,
    /// A right answer from a clock further off than the tolerance.
    Skew,
    /// Any other socket error (a reset mid-exchange, …).
    Error,
}

impl Failure {
    /// Every reason, so that each check exports all of them (0 or 1): no series appears
    /// or vanishes with the outcome.
    pub const ALL: [Failure; 8] = [
        Failure::Resolve,
        Failure::Refused,
        Failure::Timeout,
        Failure::WrongLength,
        Failure::Mismatch,
        Failure::NotALine,
        Failure::Skew,
        Failure::Error,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Resolve => "resolve",
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
            Failure::WrongLength => "wrong_length",
            Failure::Mismatch => "mismatch",
            Failure::NotALine => "not_a_line",
            Failure::Skew => "skew",
            Failure::Error => "error",
        }
    }

    fn of(error: &ClientError) -> Self {
        match error {
            ClientError::Resolve(_) => Failure::Resolve,
            ClientError::Refused(_) => Failure::Refused,
            ClientError::Timeout { .. } => Failure::Timeout,
            ClientError::Io { .. } => Failure::Error,
            ClientError::WrongLength { .. } => Failure::WrongLength,
            ClientError::EchoMismatch { .. } => Failure::Mismatch,
            ClientError::NotALine { .. } => Failure::NotALine,
        }
    }
}

/// One check: a service over a transport.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// Which service.
    pub service: Service,
    /// Which transport.
    pub transport: Transport,
    /// Where.
    pub target: String,
    /// Whether every condition held.
    pub ok: bool,
    /// Round-trip time of the exchange, when there was one.
    pub latency_seconds: Option<f64>,
    /// DAYTIME and TIME: the server's clock minus ours.
    pub skew_seconds: Option<f64>,
    /// What the server answered, for DAYTIME and TIME.
    pub answer: Option<String>,
    /// Why the check failed, in words.
    pub error: Option<String>,
    /// Why the check failed, as a reason.
    pub failure: Option<Failure>,
}

/// What to check and how strictly.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One target per service to check.
    pub targets: Vec<(Service, Target)>,
    /// Transports to check each service over.
    pub transports: Vec<Transport>,
    /// Largest clock skew that still passes.
    pub tolerance: Duration,
    /// Timeouts and retries.
    pub options: Options,
    /// Longest a whole probe may take: a check without a result by then fails as
    /// `timeout`, so that a scrape of the exporter ends within its scrape timeout even
    /// when every service stalls.
    pub budget: Duration,
}

impl Plan {
    /// The longest one check can take by its own timeouts: a UDP check waits
    /// `timeout` for each of `retries + 1` sends; a TCP check, to connect and then for
    /// each read (two reads at least).
    pub fn worst_check(&self) -> Duration {
        let timeout = self.options.timeout;
        (timeout * (self.options.retries + 1)).max(timeout * 2)
    }
}

/// Runs every check of `plan` at once, each on its own thread, and waits for them at
/// most `plan.budget`. Six small exchanges at once load no service; checks in turn
/// would add up their timeouts exactly when the services stall.
pub fn run(plan: &Plan) -> Vec<Check> {
    let deadline = Instant::now() + plan.budget;
    let (done, results) = mpsc::channel();
    let mut checks = Vec::new();
    for (service, target) in &plan.targets {
        for &transport in &plan.transports {
            let index = checks.len();
            checks.push(Check::new(*service, target, transport));
            let (done, service, target, plan) =
                (done.clone(), *service, target.clone(), plan.clone());
            // A thread that outlives the budget ends by its own socket timeouts.
            std::thread::spawn(move || {
                let _ = done.send((index, check(service, &target, transport, &plan)));
            });
        }
    }
    drop(done);
    let mut pending = checks.len();
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match results.recv_timeout(left) {
            Ok((index, check)) => {
                checks[index] = check;
                pending -= 1;
            }
            Err(_) => break,
        }
    }
    for check in checks.iter_mut().filter(|c| !c.ok && c.failure.is_none()) {
        check.failure = Some(Failure::Timeout);
        check.error = Some(format!(
            "no result within the probe's budget of {:?}",
            plan.budget
        ));
    }
    checks
}

impl Check {
    fn new(service: Service, target: &Target, transport: Transport) -> Self {
        Check {
            service,
            transport,
            target: target.to_string(),
            ok: false,
            latency_seconds: None,
            skew_seconds: None,
            answer: None,
            error: None,
            failure: None,
        }
    }
}

fn check(service: Service, target: &Target, transport: Transport, plan: &Plan) -> Check {
    let mut check = Check::new(service, target, transport);
    let outcome: Result<(Reply, Option<(f64, String)>), ClientError> = match service {
        Service::Echo => {
            let payload = format!("inetsvc probe {}\n", nonce());
            client::echo(target, transport, payload.as_bytes(), &plan.options).map(|r| (r, None))
        }
        Service::Daytime => {
            client::daytime(target, transport, &plan.options).and_then(|(line, reply)| {
                match parse_daytime(&line) {
                    Some(time) => {
                        let skew = client::clock_offset(time, &reply);
                        Ok((reply, Some((skew, line))))
                    }
                    None => Err(ClientError::NotALine {
                        peer: reply.peer,
                        text: format!("{line} (no known date format)"),
                    }),
                }
            })
        }
        Service::Time => client::time(target, transport, &plan.options).map(|(time, reply)| {
            let skew = client::clock_offset(time, &reply);
            let shown = DateTime::<Utc>::from(time).to_rfc3339();
            (reply, Some((skew, shown)))
        }),
    };
    match outcome {
        Ok((reply, clock)) => {
            check.latency_seconds = Some(reply.rtt.as_secs_f64());
            check.ok = true;
            if let Some((skew, answer)) = clock {
                check.skew_seconds = Some(skew);
                check.answer = Some(answer);
                // Whole-second answers: allow the half second of rounding on top.
                let limit = plan.tolerance.as_secs_f64() + 0.5 + reply.rtt.as_secs_f64() / 2.0;
                if skew.abs() > limit {
                    check.ok = false;
                    check.failure = Some(Failure::Skew);
                    check.error = Some(format!(
                        "clock skew {skew:+.1} s exceeds the tolerance of {:?}",
                        plan.tolerance
                    ));
                }
            }
        }
        Err(error) => {
            check.failure = Some(Failure::of(&error));
            check.error = Some(error.to_string());
        }
    }
    check
}

/// A short value that makes each probe's ECHO payload distinct.
fn nonce() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The DAYTIME line as a time, in the formats servers use: ctime (BSD inetd and
/// inetsvc's default), RFC 3339, RFC 2822, and xinetd's `25 NOV 2026 12:00:00 UTC`.
/// `None` for anything else: the RFC fixes no syntax, but a probe must compare clocks.
pub fn parse_daytime(line: &str) -> Option<SystemTime> {
    let line = line.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(line) {
        return Some(time.with_timezone(&Utc).into());
    }
    if let Ok(time) = DateTime::parse_from_rfc2822(line) {
        return Some(time.with_timezone(&Utc).into());
    }
    for format in [
        daytime::Format::Ctime.pattern(true),
        daytime::XINETD_PATTERN,
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(line, format) {
            return Some(time.and_utc().into());
        }
    }
    None
}

/// Whether every check passed.
pub fn all_ok(checks: &[Check]) -> bool {
    !checks.is_empty() && checks.iter().all(|c| c.ok)
}

/// A table for people.
pub fn table(checks: &[Check]) -> String {
    let mut out = format!(
        "{:<8} {:<9} {:<26} {:<6} {:>10} {:>8}  {}\n",
        "SERVICE", "TRANSPORT", "TARGET", "RESULT", "LATENCY", "SKEW", "DETAIL"
    );
    for c in checks {
        let latency = c
            .latency_seconds
            .map(|s| format!("{:.2} ms", s * 1000.0))
            .unwrap_or_else(|| "-".into());
        let skew = c
            .skew_seconds
            .map(|s| format!("{s:+.1} s"))
            .unwrap_or_else(|| "-".into());
        let detail = c
            .error
            .clone()
            .or_else(|| c.answer.clone())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<8} {:<9} {:<26} {:<6} {:>10} {:>8}  {}",
            c.service.name(),
            c.transport.name(),
            c.target,
            if c.ok { "ok" } else { "FAIL" },
            latency,
            skew,
            detail
        );
    }
    out
}

/// JSON for scripts: `{"ok": …, "checks": […]}`.
pub fn json(checks: &[Check]) -> String {
    serde_json::json!({ "ok": all_ok(checks), "checks": checks }).to_string()
}

/// A probe metric family: name, help, and the value a check gives it (if any).
type Family = (&'static str, &'static str, fn(&Check) -> Option<f64>);

/// Prometheus text exposition, for a probe run as a Job or a textfile collector.
pub fn prometheus(checks: &[Check]) -> String {
    let mut out = String::new();
    let families: [Family; 3] = [
        (
            "inetsvc_probe_success",
            "Whether the check passed (1) or failed (0).",
            |c| Some(if c.ok { 1.0 } else { 0.0 }),
        ),
        (
            "inetsvc_probe_duration_seconds",
            "Round-trip time of the check's exchange.",
            |c| c.latency_seconds,
        ),
        (
            "inetsvc_probe_clock_skew_seconds",
            "Server clock minus the prober's clock (DAYTIME and TIME).",
            |c| c.skew_seconds,
        ),
    ];
    let revision = option_env!("INETSVC_REVISION").unwrap_or("unknown");
    let _ = writeln!(
        out,
        "# HELP inetsvc_probe_build_info Always 1; labels tell the prober's build.\n# TYPE inetsvc_probe_build_info gauge\ninetsvc_probe_build_info{{version=\"{}\",revision=\"{revision}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for (name, help, value) in families {
        let samples: Vec<(&Check, f64)> = checks
            .iter()
            .filter_map(|c| value(c).map(|v| (c, v)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (c, v) in samples {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\",transport=\"{}\"}} {v}",
                c.service.name(),
                c.transport.name()
            );
        }
    }
    if !checks.is_empty() {
        let name = "inetsvc_probe_failure";
        let _ = writeln!(
            out,
            "# HELP {name} 1 for the reason the check failed (skew: answered, but the clock is off by more than the tolerance), 0 for every other.\n# TYPE {name} gauge"
        );
        for c in checks {
            for reason in Failure::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{}\",transport=\"{}\",reason=\"{}\"}} {}",
                    c.service.name(),
                    c.transport.name(),
                    reason.label(),
                    u8::from(c.failure == Some(reason))
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_daytime_knows_the_common_formats() {
        let expected: SystemTime = DateTime::parse_from_rfc3339("2026-11-24T21:14:53Z")
            .unwrap()
            .with_timezone(&Utc)
            .into();
        for line in [
            "Tue Nov 24 21:14:53 2026",
            "2026-11-24T21:14:53Z",
            "2026-11-24T22:14:53+01:00",
            "Tue, 24 Nov 2026 21:14:53 +0000",
            "24 NOV 2026 21:14:53 UTC",
        ] {
            assert_eq!(parse_daytime(line), Some(expected), "{line}");
        }
        assert_eq!(parse_daytime("teatime"), None);
    }

    fn sample(ok: bool) -> Check {
        Check {
            service: Service::Time,
            transport: Transport::Udp,
            target: "127.0.0.1:37".into(),
            ok,
            latency_seconds: Some(0.001),
            skew_seconds: Some(-0.25),
            answer: Some("x".into()),
            error: (!ok).then(|| "no answer".into()),
            failure: (!ok).then_some(Failure::Timeout),
        }
    }

    #[test]
    fn outputs_carry_every_check() {
        let checks = vec![sample(true), sample(false)];
        assert!(!all_ok(&checks));
        assert!(all_ok(&checks[..1]));
        assert!(!all_ok(&[]));
        let text = prometheus(&checks);
        assert!(text.contains("inetsvc_probe_success{service=\"time\",transport=\"udp\"} 0"));
        assert!(text.contains(
            "inetsvc_probe_clock_skew_seconds{service=\"time\",transport=\"udp\"} -0.25"
        ));
        assert!(text.contains(
            "inetsvc_probe_failure{service=\"time\",transport=\"udp\",reason=\"timeout\"} 1"
        ));
        assert!(text.contains(
            "inetsvc_probe_failure{service=\"time\",transport=\"udp\",reason=\"skew\"} 0"
        ));
        assert!(text.contains("inetsvc_probe_build_info{version=\""));
        let parsed: serde_json::Value = serde_json::from_str(&json(&checks)).unwrap();
        assert_eq!(parsed["ok"], false);
        assert_eq!(parsed["checks"][1]["error"], "no answer");
        assert!(table(&checks).contains("FAIL"));
    }
}
