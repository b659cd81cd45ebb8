//! The observability assets against a real Prometheus: Debian's `prometheus` binary,
//! started on loopback with the project's scrape configuration and rules, scrapes the
//! three running services while `inetsvc bench` loads them; then every PromQL expression
//! of the Grafana dashboard and of the rules is evaluated and must return data.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inetsvc_testkit::prometheus::{repo, Prober, Prometheus, Targets};
use inetsvc_testkit::{workspace_binary, Server};
use serde_json::Value;

const INETSVC: &str = env!("CARGO_BIN_EXE_inetsvc");

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

/// Every panel query with the variables at "All": (panel title, query, result). None
/// may hold a NaN, which Grafana draws as a gap and a stat shows as "NaN".
fn panel_results(prometheus: &Prometheus, dashboard: &Value) -> Vec<(String, String, Value)> {
    let mut results = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "30s")
                .replace("$namespace", ".*")
                .replace("$job", ".*")
                .replace("$service", ".*")
                .replace("$instance", ".*");
            let result = prometheus.query(&expr);
            for sample in result.as_array().unwrap() {
                assert_ne!(
                    sample["value"][1], "NaN",
                    "panel {:?}: `{expr}` gives NaN: {sample}",
                    panel["title"]
                );
            }
            results.push((panel["title"].as_str().unwrap().to_owned(), expr, result));
        }
    }
    results
}

/// What a stat panel shows for `value`, as Grafana decides it: a value mapping if one
/// matches, else the number; the colour of the mapping, else of the last threshold step
/// at or below the value.
fn stat_display(panel: &Value, value: f64) -> (String, String) {
    let defaults = &panel["fieldConfig"]["defaults"];
    for mapping in defaults["mappings"].as_array().into_iter().flatten() {
        let key = if value.fract() == 0.0 {
            format!("{value:.0}")
        } else {
            value.to_string()
        };
        if let Some(hit) = mapping["options"].get(&key) {
            return (
                hit["text"].as_str().unwrap().to_owned(),
                hit["color"].as_str().unwrap().to_owned(),
            );
        }
    }
    let mut color = String::new();
    for step in defaults["thresholds"]["steps"].as_array().unwrap() {
        if step["value"].is_null() || step["value"].as_f64().unwrap() <= value {
            color = step["color"].as_str().unwrap().to_owned();
        }
    }
    (value.to_string(), color)
}

/// On a healthy stack, idle or loaded, no stat panel shows DOWN or red, and "Targets up"
/// shows UP for every target.
fn assert_stats_read_healthy(dashboard: &Value, results: &[(String, String, Value)], phase: &str) {
    let mut read = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] != "stat" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        for (_, expr, result) in results.iter().filter(|(t, _, _)| t == title) {
            for sample in result.as_array().unwrap() {
                let value: f64 = sample["value"][1].as_str().unwrap().parse().unwrap();
                let (text, color) = stat_display(panel, value);
                assert!(
                    text != "DOWN" && color != "red",
                    "{phase}: stat {title:?} shows {text} in {color} for {value} (`{expr}`)"
                );
                if title == "Targets up" {
                    assert_eq!((text.as_str(), color.as_str()), ("UP", "green"), "{phase}");
                }
                read += 1;
            }
        }
    }
    assert!(read >= 6, "{phase}: only {read} stat values read");
}

#[test]
fn stat_display_applies_mappings_then_thresholds() {
    let panel: Value = serde_json::json!({"fieldConfig": {"defaults": {
        "mappings": [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}}}],
        "thresholds": {"steps": [{"color": "green", "value": null}, {"color": "red", "value": 0.5}]}
    }}});
    assert_eq!(stat_display(&panel, 0.0), ("DOWN".into(), "red".into()));
    assert_eq!(stat_display(&panel, 0.25), ("0.25".into(), "green".into()));
    assert_eq!(stat_display(&panel, 3.0), ("3".into(), "red".into()));
}

#[test]
fn every_dashboard_and_rule_expression_returns_data_from_a_real_prometheus() {
    let servers = [
        Server::start(
            &workspace_binary("echod"),
            // The load below is one source: lift its per-source limits, so that a healthy
            // stack under this load refuses and drops nothing.
            &[
                "--max-connections-per-source",
                "10000",
                "--udp-rate-per-source",
                "0",
            ],
        ),
        Server::start(&workspace_binary("daytimed"), &[]),
        Server::start(&workspace_binary("timed"), &[]),
    ];
    let targets: Vec<String> = servers
        .iter()
        .map(|s| s.admin.unwrap().to_string())
        .collect();
    let prober = Prober::start(INETSVC, &servers.each_ref().map(|s| s.tcp()), &[]);
    let prometheus = Prometheus::start(
        &Targets {
            services: &targets,
            prober: &prober.address,
        },
        1,
    );
    prometheus.wait_up("inetsvc-probe", 1);

    // Prometheus 3 refuses a scrape whose Content-Type is missing or unknown (2.x, run
    // here, guessed the text format): both exporters name the text format exactly.
    let exporters = targets.iter().chain(std::iter::once(&prober.address));
    for address in exporters {
        let response = inetsvc_testkit::http_request(
            address.parse().unwrap(),
            "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n",
        );
        let head = response
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            head.contains("\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8"),
            "{address}: {head}"
        );
    }

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
    // Idle (only the prober asks): no panel shows NaN, and the stat panels read healthy.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboards/inetsvc.json")).unwrap(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let idle = panel_results(&prometheus, &dashboard);
    assert_stats_read_healthy(&dashboard, &idle, "idle");

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

    // Under load every panel query returns data, none NaN, and the stats still read right.
    let loaded = panel_results(&prometheus, &dashboard);
    for (title, expr, result) in &loaded {
        assert!(
            !result.as_array().unwrap().is_empty(),
            "panel {title:?}: `{expr}` returned no data"
        );
    }
    assert!(
        loaded.len() >= 25,
        "only {} dashboard expressions",
        loaded.len()
    );
    assert_stats_read_healthy(&dashboard, &loaded, "under load");
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "datasource" {
            continue;
        }
        let query = variable["definition"].as_str().unwrap();
        let selector = query
            .trim_start_matches("label_values(")
            .rsplit_once(',')
            .unwrap()
            .0
            .replace("$namespace", ".*")
            .replace("$job", ".*")
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
    assert_eq!(groups.len(), 3, "{rules}");
    let mut alerts = 0;
    let runbooks = std::fs::read_to_string(repo().join("docs/runbooks.md")).unwrap();
    // Absolute links (Alertmanager and Grafana would resolve a relative one against their
    // own address), into the repository the workspace manifest names.
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let repository = manifest
        .lines()
        .find_map(|line| line.strip_prefix("repository = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the workspace manifest names its repository");
    let runbook_base = format!("{repository}/blob/main/docs/runbooks.md#");
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
                        .strip_prefix(&runbook_base)
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
