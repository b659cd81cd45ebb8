//! A real Prometheus (Debian's binary) for tests: started on loopback with the project's
//! own scrape configuration and rules, its targets pointed at the test's services, and
//! stopped by PID.
//!
//! Alerts that wait minutes in production are checked in seconds by [`compress`]: every
//! range window and `for` duration of the rules is divided by the same factor while the
//! expressions, thresholds and labels stay exactly as shipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, http_get, try_http_get};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Prometheus started for one test.
pub struct Prometheus {
    child: Child,
    /// `127.0.0.1:PORT` of its HTTP API.
    pub address: String,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the test's services and prober are, in place of the compose names.
pub struct Targets<'a> {
    /// Admin addresses of the services (job `inetsvc`).
    pub services: &'a [String],
    /// Address of `inetsvc probe --listen` (job `inetsvc-probe`).
    pub prober: &'a str,
}

/// Divides every `[window]` and `for:` duration in `rules` by `factor`, keeping windows at
/// 5 s or more (a few 1-second scrapes, enough for `rate`).
pub fn compress(rules: &str, factor: u64) -> String {
    let scaled = |text: &str, floor: u64| -> Option<String> {
        let seconds = humantime_seconds(text)?;
        Some(format!("{}s", (seconds / factor).max(floor)))
    };
    let mut out = String::new();
    for line in rules.lines() {
        let mut line = line.to_owned();
        if let Some(rest) = line.trim_start().strip_prefix("for: ") {
            if let Some(new) = scaled(rest.trim(), 1) {
                let indent = line.len() - line.trim_start().len();
                line = format!("{}for: {new}", &line[..indent]);
            }
        }
        let mut rewritten = String::new();
        let mut rest = line.as_str();
        while let Some(open) = rest.find('[') {
            rewritten.push_str(&rest[..=open]);
            rest = &rest[open + 1..];
            if let Some(close) = rest.find(']') {
                if let Some(new) = scaled(&rest[..close], 5) {
                    rewritten.push_str(&new);
                    rest = &rest[close..];
                }
            }
        }
        rewritten.push_str(rest);
        out.push_str(&rewritten);
        out.push('\n');
    }
    out
}

/// `30s`, `5m`, `1h`, `3d` as seconds; anything else is not a duration.
fn humantime_seconds(text: &str) -> Option<u64> {
    let unit = text.chars().last()?;
    let number: u64 = text[..text.len() - 1].parse().ok()?;
    match unit {
        's' => Some(number),
        'm' => Some(number * 60),
        'h' => Some(number * 3600),
        'd' => Some(number * 86400),
        _ => None,
    }
}

impl Prometheus {
    /// Starts Prometheus with deploy/prometheus/prometheus.yml, scraping and evaluating
    /// every second, its targets replaced by `targets` and its rules by the repository's,
    /// time-compressed by `compression` (1: as shipped).
    pub fn start(targets: &Targets, compression: u64) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "inetsvc-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        let shipped =
            std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
        let quote = |list: &[String]| {
            list.iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let replacements = [
            (
                "['echod:9007', 'daytimed:9013', 'timed:9037']".to_owned(),
                format!("[{}]", quote(targets.services)),
            ),
            (
                "['prober:9100']".to_owned(),
                format!("['{}']", targets.prober),
            ),
        ];
        let mut config = shipped;
        for (from, to) in replacements {
            assert!(
                config.contains(&from),
                "the shipped targets line {from} changed"
            );
            config = config.replace(&from, &to);
        }
        for entry in std::fs::read_dir(repo().join("deploy/prometheus/rules")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(
                dir.join("rules").join(path.file_name().unwrap()),
                compress(&text, compression),
            )
            .unwrap();
        }
        let port = free_port();
        let config = config
            .replace(
                "/etc/prometheus/rules/*.yml",
                &format!("{}/rules/*.yml", dir.display()),
            )
            .replace("scrape_interval: 5s", "scrape_interval: 1s")
            .replace("evaluation_interval: 5s", "evaluation_interval: 1s")
            // The prober's own interval and timeout: a probe that waits out a UDP
            // timeout takes more than a second.
            .replace("scrape_interval: 15s", "scrape_interval: 2s")
            .replace("scrape_timeout: 12s", "scrape_timeout: 2s")
            .replace("localhost:9090", &format!("127.0.0.1:{port}"));
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus is needed; the README test command installs it");
        let prometheus = Prometheus {
            child,
            address,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // No probe connect first: connecting to a port nothing listens on yet can
            // connect the socket to itself (TCP simultaneous open), which looked like a
            // listener and then failed the real request.
            let ready = try_http_get(prometheus.address.parse().unwrap(), "/-/ready")
                .is_some_and(|(status, _)| status == 200);
            if ready {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on the API, as JSON.
    pub fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.address.parse().unwrap(), path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Value {
        let encoded: String = expr
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let answer = self.api(&format!("/api/v1/query?query={encoded}"));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"].clone()
    }

    /// How many series `expr` returns.
    pub fn count(&self, expr: &str) -> usize {
        self.query(expr).as_array().map_or(0, Vec::len)
    }

    /// Waits until every target of `job` is up (at least `expected` of them).
    pub fn wait_up(&self, job: &str, expected: usize) {
        self.wait_for(
            &format!("targets of {job} up"),
            Duration::from_secs(30),
            || self.count(&format!("up{{job=\"{job}\"}} == 1")) >= expected,
        );
    }

    /// The firing alerts named `alert`, as their label sets.
    pub fn firing(&self, alert: &str) -> Vec<Value> {
        self.query(&format!(
            "ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"}}"
        ))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|sample| sample["metric"].clone())
        .collect()
    }

    /// Polls `done` every 250 ms until it holds, or panics naming `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; alerts now: {}",
                self.query("ALERTS")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// `inetsvc probe --listen` on a free port, stopped by PID: the compose stack's prober.
pub struct Prober {
    child: Child,
    /// Where it serves `/metrics`.
    pub address: String,
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prober {
    /// Starts the prober (`cli` is the `inetsvc` binary) against the ECHO, DAYTIME and
    /// TIME servers at `servers`, with short timeouts so that a failing check fits in a
    /// scrape; `extra` adds flags (`--only echo`).
    pub fn start(cli: &str, servers: &[std::net::SocketAddr; 3], extra: &[&str]) -> Prober {
        let address = format!("127.0.0.1:{}", free_port());
        let [echo, daytime, time] = servers.map(|s| s.to_string());
        let child = Command::new(cli)
            .args([
                "probe",
                "--echo",
                &echo,
                "--daytime",
                &daytime,
                "--time",
                &time,
            ])
            .args(["--timeout", "300ms", "--retries", "1", "--listen", &address])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cli} probe: {e}"));
        Prober { child, address }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_scales_windows_and_for_but_nothing_else() {
        let rules = "        expr: rate(x[5m]) > 0.2 and rate(y{le=\"0.1\"}[1h]) > 14.4 * 0.01\n        for: 10m\n";
        assert_eq!(
            compress(rules, 30),
            "        expr: rate(x[10s]) > 0.2 and rate(y{le=\"0.1\"}[120s]) > 14.4 * 0.01\n        for: 20s\n"
        );
        assert_eq!(
            compress("rate(x[1m])", 30),
            "rate(x[5s])\n",
            "a floor of 5 s"
        );
    }
}
