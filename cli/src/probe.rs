//! `inetsvc probe`: checks every service over TCP and UDP — the answer is right, how long
//! it took, and for DAYTIME and TIME how far the server's clock is from ours — and says
//! so as a table, JSON, or Prometheus text for a one-shot container or Kubernetes Job.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, Utc};
use inetsvc_proto::daytime;

use crate::client::{self, ClientError, Options, Reply, Transport};
use crate::target::{Service, Target};

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
    /// Why the check failed.
    pub error: Option<String>,
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
}

/// Runs every check of `plan`, one after another (a probe must not load what it checks).
pub fn run(plan: &Plan) -> Vec<Check> {
    let mut checks = Vec::new();
    for (service, target) in &plan.targets {
        for &transport in &plan.transports {
            checks.push(check(*service, target, transport, plan));
        }
    }
    checks
}

fn check(service: Service, target: &Target, transport: Transport, plan: &Plan) -> Check {
    let mut check = Check {
        service,
        transport,
        target: target.to_string(),
        ok: false,
        latency_seconds: None,
        skew_seconds: None,
        answer: None,
        error: None,
    };
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
                    check.error = Some(format!(
                        "clock skew {skew:+.1} s exceeds the tolerance of {:?}",
                        plan.tolerance
                    ));
                }
            }
        }
        Err(error) => check.error = Some(error.to_string()),
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
        let parsed: serde_json::Value = serde_json::from_str(&json(&checks)).unwrap();
        assert_eq!(parsed["ok"], false);
        assert_eq!(parsed["checks"][1]["error"], "no answer");
        assert!(table(&checks).contains("FAIL"));
    }
}
