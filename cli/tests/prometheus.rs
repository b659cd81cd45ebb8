//! The observability assets against a real Prometheus: Debian's `prometheus` binary,
//! started on loopback with the project's scrape configuration and rules, scrapes the
//! three running services while `inetsvc bench` loads them; then every PromQL expression
//! of the Grafana dashboard and of the rules is evaluated and must return data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inetsvc_testkit::{free_port, http_get, Server};
use serde_json::Value;

const INETSVC: &str = env!("CARGO_BIN_EXE_inetsvc");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn service(name: &str) -> String {
    PathBuf::from(INETSVC)
        .with_file_name(name)
        .to_string_lossy()
        .into_owned()
}

/// Prometheus started for this test, stopped by PID.
struct Prometheus {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus with deploy/prometheus/prometheus.yml, its targets replaced by
    /// `targets` and its rule files by the repository's.
    fn start(targets: &[String]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("inetsvc-prometheus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shipped =
            std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
        let compose_targets = "['echod:9007', 'daytimed:9013', 'timed:9037']";
        assert!(
            shipped.contains(compose_targets),
            "the shipped targets line changed"
        );
        let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let rules = repo()
            .join("deploy/prometheus/rules")
            .canonicalize()
            .unwrap();
        let config = shipped
            .replace(compose_targets, &format!("[{}]", quoted.join(", ")))
            .replace(
                "/etc/prometheus/rules/*.yml",
                &format!("{}/*.yml", rules.display()),
            )
            .replace("scrape_interval: 5s", "scrape_interval: 1s")
            .replace("evaluation_interval: 5s", "evaluation_interval: 1s");
        let port = free_port();
        let config = config.replace("localhost:9090", &format!("127.0.0.1:{port}"));
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
            let ready = std::net::TcpStream::connect(&prometheus.address).is_ok()
                && http_get(prometheus.address.parse().unwrap(), "/-/ready").0 == 200;
            if ready {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.address.parse().unwrap(), path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn query(&self, expr: &str) -> Value {
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
}

/// Metric names an expression reads (not recording-rule names, which hold a colon).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            let known = word.starts_with("inetsvc_")
                || word.starts_with("process_")
                || word == "up"
                || word == "scrape_duration_seconds";
            if known && !word.contains(':') && !names.contains(&word) {
                names.push(word.clone());
            }
            word.clear();
        }
    }
    names
}

#[test]
fn every_dashboard_and_rule_expression_returns_data_from_a_real_prometheus() {
    let servers = [
        Server::start(
            &service("echod"),
            &["--max-connections-per-source", "10000"],
        ),
        Server::start(&service("daytimed"), &[]),
        Server::start(&service("timed"), &[]),
    ];
    let targets: Vec<String> = servers
        .iter()
        .map(|s| s.admin.unwrap().to_string())
        .collect();
    let prometheus = Prometheus::start(&targets);

    // Scraping has started for every target before the load begins.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus
        .query("up{job=\"inetsvc\"} == 1")
        .as_array()
        .unwrap()
        .len()
        < 3
    {
        assert!(Instant::now() < deadline, "targets never came up");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Load every service and transport for a few seconds while Prometheus scrapes.
    let load: Vec<Vec<String>> = vec![
        vec![servers[0].tcp().to_string(), "echo-tcp".into()],
        vec![servers[0].udp().to_string(), "echo-udp".into()],
        vec![servers[1].tcp().to_string(), "connect".into()],
        vec![servers[2].tcp().to_string(), "connect".into()],
    ];
    let generators: Vec<Child> = load
        .iter()
        .map(|args| {
            Command::new(INETSVC)
                .args([
                    "bench", &args[0], "--mode", &args[1], "-c", "2", "-d", "6s", "--json",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut generator in generators {
        assert!(generator.wait().unwrap().success());
    }
    // One more scrape after the load.
    std::thread::sleep(Duration::from_millis(1500));
    // Every target up.
    let up = prometheus.query("up{job=\"inetsvc\"}");
    assert_eq!(up.as_array().unwrap().len(), 3, "{up}");
    for sample in up.as_array().unwrap() {
        assert_eq!(sample["value"][1], "1", "{sample}");
    }
    assert!(
        prometheus
            .query("sum(rate(inetsvc_requests_total[30s])) > 0")
            .as_array()
            .unwrap()
            .len()
            == 1
    );

    // The dashboard, with its variables at "All".
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboards/inetsvc.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "30s")
                .replace("$service", ".*")
                .replace("$instance", ".*");
            let result = prometheus.query(&expr);
            assert!(
                !result.as_array().unwrap().is_empty(),
                "panel {:?}: `{expr}` returned no data",
                panel["title"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} dashboard expressions");
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["definition"].as_str().unwrap();
        let selector = query
            .trim_start_matches("label_values(")
            .rsplit_once(',')
            .unwrap()
            .0
            .replace("$service", ".*");
        assert!(
            !prometheus.query(&selector).as_array().unwrap().is_empty(),
            "{query}"
        );
    }

    // The rules, as Prometheus loaded them: all healthy; recording rules return data;
    // every metric an alert reads exists.
    std::thread::sleep(Duration::from_secs(2));
    let rules = prometheus.api("/api/v1/rules");
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{rules}");
    let mut alerts = 0;
    let runbooks = std::fs::read_to_string(repo().join("docs/runbooks.md")).unwrap();
    for group in groups {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["query"].as_str().unwrap();
            assert_eq!(rule["health"], "ok", "{expr}: {rule}");
            match rule["type"].as_str().unwrap() {
                "recording" => assert!(
                    !prometheus.query(expr).as_array().unwrap().is_empty(),
                    "recording rule {} returned no data",
                    rule["name"]
                ),
                _ => {
                    alerts += 1;
                    let annotations = &rule["annotations"];
                    for key in ["summary", "description", "runbook_url"] {
                        assert!(annotations[key].is_string(), "{} lacks {key}", rule["name"]);
                    }
                    let anchor = annotations["runbook_url"]
                        .as_str()
                        .unwrap()
                        .strip_prefix("docs/runbooks.md#")
                        .expect("runbook links point into docs/runbooks.md");
                    let heading = format!("## {}", rule["name"].as_str().unwrap());
                    assert_eq!(anchor, heading[3..].to_lowercase());
                    assert!(
                        runbooks.contains(&format!("{heading}\n")),
                        "no runbook for {heading}"
                    );
                    prometheus.query(expr);
                    for name in metric_names(expr) {
                        let series = prometheus.query(&format!("count({name})"));
                        assert!(
                            !series.as_array().unwrap().is_empty(),
                            "alert {} reads {name}, which no service exposes",
                            rule["name"]
                        );
                    }
                }
            }
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
    // Healthy and loaded, nothing fires.
    let firing = prometheus.query("ALERTS{alertstate=\"firing\"}");
    assert!(firing.as_array().unwrap().is_empty(), "{firing}");
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names("sum by (service) (rate(inetsvc_requests_total{x=\"y\"}[5m])) / inetsvc:requests:rate5m"),
        vec!["inetsvc_requests_total"]
    );
    assert_eq!(
        metric_names("process_open_fds / process_max_fds > 0.8"),
        vec!["process_open_fds", "process_max_fds"]
    );
}
