//! Every game-day scenario played through `inetsvc gameday`, in compressed time, against
//! the real services, the real prober and a real Prometheus evaluating the project's own
//! rules (windows and `for` divided by [`COMPRESS`]; the runner divides the time box, the
//! hold and the services' timeouts alike). For each scenario:
//!
//! - doing nothing fails it at the time box;
//! - the trainee's token cannot clear what was injected (403), and the trainer clearing
//!   it by hand is reported as giving up;
//! - a wrong diagnosis is counted, the right one accepted;
//! - every alert the scenario lists fires;
//! - the solution, applied with the trainee's token, wins: its alerts resolve, the prober
//!   stays green for the hold, and the results validate (JSON, JUnit XML against
//!   deploy/test/fixtures/junit.xsd, the Markdown summary).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use inetsvc_cli::gameday::scenario::{catalogue, Scenario};
use inetsvc_testkit::prometheus::{repo, Prober, Prometheus, Targets};
use inetsvc_testkit::{run_binary, workspace_binary, Server, ADMIN_TOKEN};

const INETSVC: &str = env!("CARGO_BIN_EXE_inetsvc");

/// Rule windows, `for` durations, time boxes, holds and server timeouts are divided by this.
const COMPRESS: u64 = 30;

/// The trainee's token the services take besides the trainer's.
const TRAINEE_TOKEN: &str = "trainee-token-0123456789abcdef";

/// Longest wait for the listed alerts to fire.
const PATIENCE: Duration = Duration::from_secs(120);

/// One stack for one scenario: the three services as the training profile sets them, the
/// prober, Prometheus, and a game directory describing them.
struct Stage {
    services: Vec<(&'static str, Server)>,
    _prober: Prober,
    prometheus: Prometheus,
    dir: PathBuf,
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Whatever the test did, no traffic process outlives it.
        let _ = self.gameday(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Stage {
    /// Starts the stack; `offender` is the loopback address the offender sends from.
    fn start(name: &str, offender: IpAddr) -> Stage {
        let env = [
            ("INETSVC_ADMIN_TOKEN", ADMIN_TOKEN),
            ("INETSVC_ADMIN_TRAINEE_TOKEN", TRAINEE_TOKEN),
            // deploy/training.env's caps.
            ("INETSVC_MAX_CONNECTIONS", "64"),
            ("INETSVC_UDP_RATE_PER_SOURCE", "50"),
        ];
        let start = |binary: &str| {
            Server::start_with_env(&workspace_binary(binary), &["--admin-api", "true"], &env)
        };
        let services = vec![
            ("echo", start("echod")),
            ("daytime", start("daytimed")),
            ("time", start("timed")),
        ];
        let prober = Prober::start(
            INETSVC,
            &[
                services[0].1.tcp(),
                services[1].1.tcp(),
                services[2].1.tcp(),
            ],
            &[],
        );
        let admins: Vec<String> = services
            .iter()
            .map(|(_, s)| s.admin.unwrap().to_string())
            .collect();
        let prometheus = Prometheus::start(
            &Targets {
                services: &admins,
                prober: &prober.address,
            },
            COMPRESS,
        );
        prometheus.wait_up("inetsvc", 3);
        prometheus.wait_up("inetsvc-probe", 1);
        let dir =
            std::env::temp_dir().join(format!("inetsvc-gameday-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("trainer.token"), ADMIN_TOKEN).unwrap();
        std::fs::write(dir.join("trainee.token"), TRAINEE_TOKEN).unwrap();
        let endpoints: serde_json::Map<String, serde_json::Value> = services
            .iter()
            .map(|(name, s)| {
                (
                    (*name).to_owned(),
                    serde_json::json!({
                        "admin": format!("http://{}", s.admin.unwrap()),
                        "target": s.tcp().to_string(),
                    }),
                )
            })
            .collect();
        let stack = serde_json::json!({
            "name": name,
            "prometheus": format!("http://{}", prometheus.address),
            "step": "1s",
            "services": endpoints,
            "trainer_token_file": "trainer.token",
            "offender": offender.to_string(),
        });
        std::fs::write(dir.join("stack.json"), stack.to_string()).unwrap();
        Stage {
            services,
            _prober: prober,
            prometheus,
            dir,
        }
    }

    fn admin_of(&self, service: &str) -> String {
        let (_, server) = self.services.iter().find(|(n, _)| *n == service).unwrap();
        server.admin.unwrap().to_string()
    }

    /// `inetsvc gameday --dir DIR ARGS…`.
    fn gameday(&self, args: &[&str]) -> Output {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut full = vec!["gameday", "--dir", dir.as_str()];
        full.extend_from_slice(args);
        run_binary(INETSVC, &full, &[])
    }

    /// `inetsvc gameday ARGS…`, which must succeed; its standard output.
    fn play(&self, args: &[&str]) -> String {
        let output = self.gameday(args);
        assert!(
            output.status.success(),
            "inetsvc gameday {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `inetsvc fault|admin --admin SERVICE --token-file ROLE.token ARGS…`.
    fn as_role(&self, role: &str, command: &str, service: &str, args: &[&str]) -> Output {
        let admin = self.admin_of(service);
        let token = self
            .dir
            .join(format!("{role}.token"))
            .to_string_lossy()
            .into_owned();
        let mut full = vec![
            command,
            "--admin",
            admin.as_str(),
            "--token-file",
            token.as_str(),
        ];
        full.extend_from_slice(args);
        run_binary(INETSVC, &full, &[])
    }

    fn run_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.play(&["status", "--json"])).unwrap()
    }

    /// Waits until every alert the scenario lists has fired.
    fn every_alert_fires(&self, scenario: &Scenario) {
        let deadline = Instant::now() + PATIENCE;
        let mut firing: Vec<(String, String)> = Vec::new();
        loop {
            let now = self.prometheus.query("ALERTS{alertstate=\"firing\"}");
            for sample in now.as_array().into_iter().flatten() {
                let labels = &sample["metric"];
                let pair = (
                    labels["alertname"].as_str().unwrap_or("").to_owned(),
                    labels["service"].as_str().unwrap_or("").to_owned(),
                );
                if !firing.contains(&pair) {
                    firing.push(pair);
                }
            }
            let missing: Vec<String> = scenario
                .alerts
                .iter()
                .filter(|a| !firing.contains(&(a.alert.clone(), a.service.clone())))
                .map(|a| format!("{} ({})", a.alert, a.service))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: never fired: {missing:?}; firing: {firing:?}",
                scenario.name
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The trainer undoes the injection by hand, the way a trainer tired of waiting would.
fn undo_by_hand(stage: &Stage, scenario: &Scenario) {
    let output = if let Some(inject) = scenario.inject.first() {
        stage.as_role(
            "trainer",
            "fault",
            &inject.service,
            &["clear", &inject.fault],
        )
    } else {
        let push = &scenario.push[0];
        stage.as_role("trainer", "admin", &push.service, &["unset", &push.key])
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The results of the last finished run: every file there, and valid.
fn check_results(stage: &Stage, scenario: &Scenario, outcome: &str) {
    let results = stage.dir.join("results");
    let newest = |ext: &str| -> PathBuf {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&results)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        files.pop().unwrap_or_else(|| panic!("no .{ext} result"))
    };
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest("json")).unwrap()).unwrap();
    assert_eq!(json["scenario"], scenario.name.as_str());
    assert_eq!(json["outcome"], outcome);
    validate_junit(&newest("xml"));
    let summary = std::fs::read_to_string(newest("md")).unwrap();
    let word = outcome.replace('_', " ");
    assert!(
        summary.contains(&format!("# Game day: {} — {word}", scenario.name))
            && summary.contains("| first alert firing |"),
        "{summary}"
    );
}

/// Validates a JUnit file against the common schema's shape, with xmllint.
fn validate_junit(file: &Path) {
    let schema = repo().join("deploy/test/fixtures/junit.xsd");
    let output = std::process::Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&schema)
        .arg(file)
        .output()
        .expect("xmllint (Debian's libxml2-utils; the README test command installs it)");
    assert!(
        output.status.success(),
        "{} does not validate: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Plays `name` three times on one stage: doing nothing, giving up, winning.
fn play(name: &str, offender: &str) {
    let catalogue = catalogue();
    let scenario = catalogue.find(name).unwrap().clone();
    let offender: IpAddr = offender.parse().unwrap();
    let compress = COMPRESS.to_string();

    // Doing nothing fails at the time box (a short one: the outcome is the same). On a
    // stage of its own: its alerts would hold up the next game's start.
    {
        let idle = Stage::start(&format!("{name}-idle"), offender);
        idle.play(&[
            "start",
            name,
            "--trainee",
            "idle",
            "--compress",
            &compress,
            "--time-box",
            "6s",
        ]);
        let waited = idle.play(&["wait"]);
        assert!(
            waited.starts_with(&format!("# Game day: {name} — timed out")),
            "{waited}"
        );
        check_results(&idle, &scenario, "timed_out");
        idle.play(&["stop"]);
    }
    let stage = Stage::start(name, offender);

    // The trainee cannot clear the injection; the trainer clearing it is giving up.
    stage.play(&[
        "start",
        name,
        "--trainee",
        "quitter",
        "--compress",
        &compress,
    ]);
    for inject in &scenario.inject {
        let refused = stage.as_role("trainee", "fault", &inject.service, &["clear", "--all"]);
        assert_eq!(refused.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("forbidden (403)"));
    }
    if scenario.inject.is_empty() && scenario.push.is_empty() {
        // Nothing to undo by hand but the traffic: giving up is the command.
        stage.play(&["give-up"]);
    } else {
        undo_by_hand(&stage, &scenario);
    }
    let status = stage.run_json();
    assert_eq!(status["outcome"], "gave_up", "{status}");
    check_results(&stage, &scenario, "gave_up");
    stage.play(&["stop"]);

    // The real game, with a time box of 4 minutes: what does not compress (1-second
    // scrapes and evaluations, 5-second windows at the least, the prober's 2-second
    // scrape) makes a compressed game slower than 1/30 of a real one, and a loaded test
    // machine slower still; the time box itself is checked above.
    stage.play(&[
        "start",
        name,
        "--trainee",
        "ada",
        "--compress",
        &compress,
        "--time-box",
        "240s",
    ]);
    let wrong = catalogue
        .causes
        .keys()
        .find(|c| **c != scenario.cause)
        .unwrap();
    assert!(stage.play(&["diagnose", wrong]).contains("Not the cause"));
    assert!(stage.play(&["hint"]).contains("Hint 1 of"));
    assert!(stage.play(&["diagnose", &scenario.cause]).contains("Right"));
    stage.every_alert_fires(&scenario);
    assert!(stage
        .play(&["wait", "--firing"])
        .contains("every listed alert fired"));
    // The remedy, with the trainee's token (the autopilot applies the first way).
    let token = stage
        .dir
        .join("trainee.token")
        .to_string_lossy()
        .into_owned();
    stage.play(&["solve", "--token-file", &token]);
    let waited = stage.play(&["wait"]);
    let won = waited.starts_with(&format!("# Game day: {name} — victory"));
    if !won {
        for (service, _) in &stage.services {
            let trail = stage.as_role("trainer", "admin", service, &["audit"]);
            eprintln!(
                "{service} trail:\n{}",
                String::from_utf8_lossy(&trail.stdout)
            );
            let settings = stage.as_role("trainer", "admin", service, &["settings"]);
            eprintln!(
                "{service} settings:\n{}",
                String::from_utf8_lossy(&settings.stdout)
            );
        }
    }
    assert!(won, "{waited}");
    let run = stage.run_json();
    assert_eq!(run["hints_taken"], 1);
    assert_eq!(run["diagnoses"].as_array().unwrap().len(), 2);
    for time in ["first_firing_at", "remedy_at", "resolved_at", "victory_at"] {
        assert!(run[time].is_f64(), "{time}: {run}");
    }
    assert!(
        run["remedy"][0]
            .as_str()
            .unwrap()
            .ends_with("(by the trainee)"),
        "{run}"
    );
    check_results(&stage, &scenario, "victory");
    // The list is whole: what fired during the game is what the scenario lists (besides
    // InetsvcFaultInjected, which every fault raises for the trainer).
    let seconds =
        (inetsvc_cli::gameday::now() - run["started_at"].as_f64().unwrap()).ceil() as u64 + 2;
    let fired = stage.prometheus.query(&format!(
        "group by (alertname, service) (count_over_time(ALERTS{{alertstate=\"firing\",alertname!=\"InetsvcFaultInjected\"}}[{seconds}s]))"
    ));
    let fired: Vec<(String, String)> = fired
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let l = &s["metric"];
            (
                l["alertname"].as_str().unwrap().to_owned(),
                l["service"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let pair = |a: &inetsvc_cli::gameday::scenario::AlertRef| (a.alert.clone(), a.service.clone());
    for alert in &fired {
        assert!(
            scenario
                .alerts
                .iter()
                .chain(&scenario.also)
                .any(|a| pair(a) == *alert),
            "{name}: {alert:?} fired but is not listed; fired: {fired:?}"
        );
    }
    for alert in &scenario.alerts {
        assert!(
            fired.contains(&pair(alert)),
            "{name}: {alert:?} is listed but did not fire"
        );
    }
    // No listed alert fires once the game is won (pending pages nobody).
    for alert in &scenario.alerts {
        let query = format!(
            "ALERTS{{alertstate=\"firing\",alertname=\"{}\",service=\"{}\"}}",
            alert.alert, alert.service
        );
        assert_eq!(stage.prometheus.count(&query), 0, "{query} still firing");
    }
    stage.play(&["stop"]);
}

#[test]
fn clock_skew() {
    play("clock-skew", "127.0.0.2");
}

#[test]
fn udp_echo_loop() {
    play("udp-echo-loop", "127.0.0.3");
}

#[test]
fn connection_exhaustion() {
    play("connection-exhaustion", "127.0.0.4");
}

#[test]
fn bad_rollout() {
    play("bad-rollout", "127.0.0.5");
}

#[test]
fn liveness_flapping() {
    play("liveness-flapping", "127.0.0.6");
}

#[test]
fn latency_slo_burn() {
    play("latency-slo-burn", "127.0.0.7");
}

#[test]
fn udp_loss() {
    play("udp-loss", "127.0.0.8");
}

#[test]
fn every_scenario_is_played_here_and_documented() {
    let source = std::fs::read_to_string(repo().join("cli/tests/gameday.rs")).unwrap();
    for scenario in catalogue().scenario {
        assert!(
            source.contains(&format!("play(\"{}\"", scenario.name)),
            "{} is not played",
            scenario.name
        );
    }
    let output = run_binary(
        INETSVC,
        &[
            "gameday",
            "docs",
            "--check",
            &repo().join("docs/training").to_string_lossy(),
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
