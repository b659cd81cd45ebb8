//! `inetsvc gameday`: timed, graded training exercises against the real services and the
//! real alerts (docs/training/README.md).
//!
//! The runner keeps no process of its own: `start` sets the faults and pushes (trainer's
//! token), starts the traffic and writes the run to `run.json` in the game directory;
//! every later command reads it, asks the services' audit trails and Prometheus what
//! happened and when, and writes it back. The game directory also holds `stack.json`
//! (where the stack's services, Prometheus and the trainer's token are, how to start
//! traffic inside it) and, when a run ends, its results.
//!
//! - [`scenario`]: the definitions (`scenarios.toml`) and the pure judgements on them;
//! - [`prometheus`]: the times, from Prometheus's API;
//! - [`results`]: JSON, JUnit XML and Markdown, and the ranking of several runs;
//! - [`traffic`]: the load kinds.

pub mod command;
pub mod prometheus;
pub mod results;
pub mod scenario;
pub mod traffic;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fault::AdminClient;
use prometheus::{alerts_selector, Prometheus};
use scenario::Scenario;

/// The services of a stack, as `stack.json` and the scenarios name them.
const SERVICES: [&str; 3] = ["echo", "daytime", "time"];

/// The actor the runner's own admin requests carry, so that its changes are never taken
/// for the trainer's or the trainee's.
pub const RUNNER: &str = "gameday";

/// The actor of the settings a scenario pushes: what a deployment pipeline would be.
pub const DEPLOY: &str = "deploy";

/// Longest wait at the start for the alerts of a previous game to resolve, shipped
/// duration: the slow latency-burn alert needs its 30-minute window to clear.
const QUIET_WAIT: Duration = Duration::from_secs(40 * 60);

/// Server timeouts that `--compress` divides along with the alert windows.
const COMPRESSED_KEYS: [&str; 3] = ["idle_timeout", "write_timeout", "max_connection_time"];

/// Where a stack is and how to reach it (`stack.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// The stack's (or trainee's) name.
    pub name: String,
    /// Prometheus's base URL.
    pub prometheus: String,
    /// Prometheus's rule evaluation interval (`5s` as shipped).
    #[serde(default = "default_step")]
    pub step: String,
    /// Label matchers that pick this stack's series out of a shared Prometheus
    /// (`namespace="inetsvc-ada"` on a cluster); empty: Prometheus is the stack's own.
    #[serde(default)]
    pub matchers: String,
    /// `echo`, `daytime`, `time` → their addresses.
    pub services: BTreeMap<String, Endpoint>,
    /// The trainer's token, in a file (relative to the game directory).
    pub trainer_token_file: PathBuf,
    /// How traffic starts inside the stack; absent: as processes on this machine.
    #[serde(default)]
    pub launcher: Option<Launcher>,
    /// On this machine: the address the offender sends from (a loopback one).
    #[serde(default)]
    pub offender: Option<IpAddr>,
}

fn default_step() -> String {
    "5s".to_owned()
}

/// One service of the stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Its admin API, `http://HOST:PORT`.
    pub admin: String,
    /// Its TCP/UDP address as the traffic reaches it.
    pub target: String,
}

/// Commands that run traffic inside the stack; `{name}` is the traffic's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launcher {
    /// Starts `inetsvc ARGS…` detached, e.g. `docker-compose … run -d --name {name} trainer`.
    pub run: Vec<String>,
    /// Stops it, e.g. `docker rm -f {name}`.
    pub stop: Vec<String>,
    /// Prints its address, e.g. `docker inspect -f … {name}`.
    pub address: Vec<String>,
}

/// A started load: a process on this machine or a named container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handle {
    /// Process id (on this machine).
    pub pid: Option<u32>,
    /// Name (through the launcher).
    pub name: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Fixed within the time box.
    Victory,
    /// The time box ran out.
    TimedOut,
    /// `give-up`, or the trainer undid the injection.
    GaveUp,
}

impl Outcome {
    /// As the summary says it.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Victory => "victory",
            Outcome::TimedOut => "timed out",
            Outcome::GaveUp => "gave up",
        }
    }
}

/// One diagnosis offered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Diagnosis {
    /// What the trainee said.
    pub answer: String,
    /// Whether it is the cause.
    pub correct: bool,
    /// When (Unix seconds).
    pub at: f64,
}

/// One run of one scenario (`run.json`, and the JSON result).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// The scenario's name.
    pub scenario: String,
    /// Who plays.
    pub trainee: String,
    /// The stack's name.
    pub stack: String,
    /// Time compression (1: real time).
    pub compress: u32,
    /// Unix seconds.
    pub started_at: f64,
    /// Seconds, compressed.
    pub time_box_seconds: f64,
    /// Seconds, compressed.
    pub hold_seconds: f64,
    /// Each service's last audit number before the start.
    pub audit_since: BTreeMap<String, u64>,
    /// The traffic started.
    pub traffic: Vec<Handle>,
    /// The offender's address, when the scenario has one.
    pub offender: Option<IpAddr>,
    /// Hints given.
    pub hints_taken: usize,
    /// Every diagnosis offered.
    pub diagnoses: Vec<Diagnosis>,
    /// The first alert of the scenario pending (Unix seconds).
    pub first_pending_at: Option<f64>,
    /// The first alert of the scenario firing.
    pub first_firing_at: Option<f64>,
    /// The remedy applied (from the audit trail).
    pub remedy_at: Option<f64>,
    /// What the remedy was.
    pub remedy: Vec<String>,
    /// The scenario's alerts gone after the remedy.
    pub resolved_at: Option<f64>,
    /// Victory: remedy, alerts resolved, prober green for the hold.
    pub victory_at: Option<f64>,
    /// How it ended, once it has.
    pub outcome: Option<Outcome>,
    /// When it ended.
    pub ended_at: Option<f64>,
    /// Why it ended (for a give-up: what the trainer did).
    pub reason: Option<String>,
}

impl Run {
    /// Seconds from the start to `at`.
    pub fn after(&self, at: Option<f64>) -> Option<f64> {
        at.map(|t| (t - self.started_at).max(0.0))
    }

    /// When a correct diagnosis was given.
    pub fn diagnosed_at(&self) -> Option<f64> {
        self.diagnoses.iter().find(|d| d.correct).map(|d| d.at)
    }

    /// Wrong diagnoses offered.
    pub fn wrong_diagnoses(&self) -> usize {
        self.diagnoses.iter().filter(|d| !d.correct).count()
    }
}

/// Now, in Unix seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The game directory: `stack.json`, `run.json`, `results/`.
pub struct Game {
    dir: PathBuf,
    /// The stack it plays on.
    pub stack: Stack,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `value` to `path` whole (a temporary file renamed), so that a reader never
/// sees half of it.
pub fn write_text(path: &Path, text: &str) -> Result<(), String> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Game {
    /// The game in `dir`, whose `stack.json` must exist.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let stack: Stack = read_json(&dir.join("stack.json")).map_err(|e| {
            format!("{e} (a game directory needs the stack.json that scripts/gameday writes)")
        })?;
        for name in SERVICES {
            if !stack.services.contains_key(name) {
                return Err(format!("stack.json: services: no `{name}`"));
            }
        }
        Ok(Game {
            dir: dir.to_path_buf(),
            stack,
        })
    }

    fn run_path(&self) -> PathBuf {
        self.dir.join("run.json")
    }

    /// The run in progress (or the last one).
    pub fn run(&self) -> Result<Run, String> {
        read_json(&self.run_path())
            .map_err(|e| format!("{e}: no game started here (`inetsvc gameday start SCENARIO`)"))
    }

    /// Saves the run.
    pub fn save(&self, run: &Run) -> Result<(), String> {
        let text = serde_json::to_string_pretty(run).map_err(|e| e.to_string())?;
        write_text(&self.run_path(), &text)
    }

    /// Where the results of finished runs go.
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    fn token(&self) -> Result<String, String> {
        let path = self.dir.join(&self.stack.trainer_token_file);
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_owned())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The trainer's client of `service`'s admin API, naming itself `actor`.
    pub fn admin(&self, service: &str, actor: &str) -> Result<AdminClient, String> {
        let endpoint = self
            .stack
            .services
            .get(service)
            .ok_or_else(|| format!("stack.json: no service `{service}`"))?;
        AdminClient::new(
            endpoint.admin.clone(),
            self.token()?,
            Duration::from_secs(5),
        )
        .map(|c| c.with_actor(actor))
        .map_err(|e| e.to_string())
    }

    fn prometheus(&self) -> Result<Prometheus, String> {
        let step = humantime::parse_duration(&self.stack.step)
            .map_err(|e| format!("stack.json: step: {e}"))?;
        Prometheus::new(&self.stack.prometheus, step)
    }

    /// Puts every service back as configured: faults cleared, the API's settings unset.
    pub fn reset(&self) -> Result<(), String> {
        for service in SERVICES {
            let admin = self.admin(service, RUNNER)?;
            admin.clear(None).map_err(|e| format!("{service}: {e}"))?;
            let settings = admin.settings().map_err(|e| format!("{service}: {e}"))?;
            if let Some(overrides) = settings["overrides"].as_object() {
                for key in overrides.keys() {
                    admin
                        .unset_setting(key)
                        .map_err(|e| format!("{service}: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// Waits until none of the scenario's alerts is pending or firing, so that the times
    /// measured are this game's and not the last one's.
    fn wait_quiet(&self, scenario: &Scenario, patience: Duration) -> Result<(), String> {
        let prometheus = self.prometheus()?;
        let query = self.alerts(&scenario.alert_names(), &scenario.services(), "");
        let deadline = std::time::Instant::now() + patience;
        let mut told = false;
        while prometheus.count_now(&query)? > 0 {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "the scenario's alerts are still active after {}: {query}",
                    humantime::format_duration(patience)
                ));
            }
            if !told {
                eprintln!("waiting for the alerts of an earlier game to resolve…");
                told = true;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(())
    }

    /// Starts `scenario`: resets the stack, compresses the timeouts, pushes, injects,
    /// starts the traffic, and saves the run.
    pub fn start(
        &self,
        scenario: &Scenario,
        trainee: &str,
        compress: u32,
        time_box: Option<Duration>,
    ) -> Result<Run, String> {
        if let Ok(run) = self.run() {
            if run.outcome.is_none() {
                return Err(format!(
                    "`{}` is still being played here; `inetsvc gameday stop` first",
                    run.scenario
                ));
            }
        }
        self.reset()?;
        let compress = compress.max(1);
        self.wait_quiet(scenario, QUIET_WAIT / compress)?;
        let mut audit_since = BTreeMap::new();
        for service in SERVICES {
            let admin = self.admin(service, RUNNER)?;
            if compress > 1 {
                let settings = admin.settings().map_err(|e| format!("{service}: {e}"))?;
                for key in COMPRESSED_KEYS {
                    let shipped = settings["settings"][key].as_str().unwrap_or_default();
                    let shipped = humantime::parse_duration(shipped)
                        .map_err(|e| format!("{service}: {key}: {e}"))?;
                    let value = format!("{}ms", (shipped / compress).as_millis().max(1));
                    admin
                        .set_setting(key, &value)
                        .map_err(|e| format!("{service}: {key}: {e}"))?;
                }
            }
            let trail = admin.audit(0).map_err(|e| format!("{service}: {e}"))?;
            let last = trail["entries"]
                .as_array()
                .and_then(|e| e.last())
                .and_then(|e| e["seq"].as_u64())
                .unwrap_or(0);
            audit_since.insert(service.to_owned(), last);
        }
        let started_at = now();
        for push in &scenario.push {
            self.admin(&push.service, DEPLOY)?
                .set_setting(&push.key, &push.value)
                .map_err(|e| format!("{}: {}: {e}", push.service, push.key))?;
        }
        for inject in &scenario.inject {
            self.admin(&inject.service, RUNNER)?
                .set(&inject.fault, &inject.params)
                .map_err(|e| format!("{}: {}: {e}", inject.service, inject.fault))?;
        }
        let time_box = time_box.unwrap_or(scenario.time_box / compress);
        let mut run = Run {
            scenario: scenario.name.clone(),
            trainee: trainee.to_owned(),
            stack: self.stack.name.clone(),
            compress,
            started_at,
            time_box_seconds: time_box.as_secs_f64(),
            hold_seconds: (scenario.hold / compress).as_secs_f64(),
            audit_since,
            traffic: Vec::new(),
            offender: None,
            hints_taken: 0,
            diagnoses: Vec::new(),
            first_pending_at: None,
            first_firing_at: None,
            remedy_at: None,
            remedy: Vec::new(),
            resolved_at: None,
            victory_at: None,
            outcome: None,
            ended_at: None,
            reason: None,
        };
        // The traffic outlives the time box a little, so that the end is judged on load.
        let lasts = time_box + Duration::from_secs(60);
        for (i, load) in scenario.traffic.iter().enumerate() {
            let (handle, address) = self.launch(load, i, lasts)?;
            if load.offender {
                run.offender = address;
            }
            run.traffic.push(handle);
        }
        self.save(&run)?;
        Ok(run)
    }

    /// Starts one load; returns it and the address it sends from (when it is known).
    fn launch(
        &self,
        load: &scenario::Traffic,
        index: usize,
        lasts: Duration,
    ) -> Result<(Handle, Option<IpAddr>), String> {
        let target = &self
            .stack
            .services
            .get(&load.service)
            .ok_or_else(|| format!("stack.json: no service `{}`", load.service))?
            .target;
        let mut args: Vec<String> = vec![
            "gameday".into(),
            "traffic".into(),
            load.kind.clone(),
            target.clone(),
            "--for".into(),
            format!("{}s", lasts.as_secs()),
        ];
        if let Some(every) = load.every {
            args.extend(["--every".into(), format!("{}ms", every.as_millis())]);
        }
        if let Some(count) = load.connections {
            args.extend(["--connections".into(), count.to_string()]);
        }
        if load.udp {
            args.push("--udp".into());
        }
        match &self.stack.launcher {
            None => {
                let source = if load.offender {
                    self.stack.offender
                } else {
                    None
                };
                if let Some(ip) = source {
                    args.extend(["--source".into(), ip.to_string()]);
                }
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let child = std::process::Command::new(exe)
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start traffic: {e}"))?;
                let handle = Handle {
                    pid: Some(child.id()),
                    name: None,
                };
                Ok((handle, source))
            }
            Some(launcher) => {
                let name = format!("{}-gameday-{index}", self.stack.name);
                let fill = |template: &[String]| -> Vec<String> {
                    template
                        .iter()
                        .map(|part| part.replace("{name}", &name))
                        .collect()
                };
                let mut command = fill(&launcher.run);
                command.extend(args);
                run_command(&command)?;
                let address = run_command(&fill(&launcher.address))?
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.parse().ok());
                Ok((
                    Handle {
                        pid: None,
                        name: Some(name),
                    },
                    address,
                ))
            }
        }
    }

    /// Stops the run's traffic.
    pub fn stop_traffic(&self, run: &Run) {
        for handle in &run.traffic {
            if let Some(pid) = handle.pid {
                // Only the process the runner started, by its id.
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            if let (Some(name), Some(launcher)) = (&handle.name, &self.stack.launcher) {
                let command: Vec<String> = launcher
                    .stop
                    .iter()
                    .map(|p| p.replace("{name}", name))
                    .collect();
                let _ = run_command(&command);
            }
        }
    }

    /// Looks at what happened since the start and decides the outcome when it can.
    pub fn evaluate(&self, run: &mut Run, scenario: &Scenario) -> Result<(), String> {
        if run.outcome.is_some() {
            return Ok(());
        }
        let now = now();
        let prometheus = self.prometheus()?;
        let names = scenario.alert_names();
        let services = scenario.services();
        if run.first_pending_at.is_none() {
            run.first_pending_at =
                prometheus.first(&self.alerts(&names, &services, ""), run.started_at, now)?;
        }
        if run.first_firing_at.is_none() {
            run.first_firing_at = prometheus.first(
                &self.alerts(&names, &services, "firing"),
                run.started_at,
                now,
            )?;
        }
        let mut trails = BTreeMap::new();
        for service in SERVICES {
            let since = run.audit_since.get(service).copied().unwrap_or(0);
            let trail = self
                .admin(service, RUNNER)?
                .audit(since)
                .map_err(|e| format!("{service}: {e}"))?;
            trails.insert(
                service,
                trail["entries"].as_array().cloned().unwrap_or_default(),
            );
        }
        if let Some((at, what)) = undone_by_trainer(scenario, &trails) {
            return self.finish(run, Outcome::GaveUp, at, Some(what));
        }
        self.judge_remedy(run, scenario, &trails)?;
        if let Some(remedy_at) = run.remedy_at {
            let step = prometheus.step();
            // Resolved is none firing. One still pending pages nobody, and the slow tier
            // of a burn-rate alert can stay pending for its whole short window (30 min)
            // after the fix.
            let firing = self.alerts(&names, &services, "firing");
            let active = prometheus.last(&firing, run.started_at, now)?;
            let resolved = match active {
                Some(last) if last >= now - 2.0 * step => None,
                Some(last) => Some((last + step).max(remedy_at)),
                None => Some(remedy_at),
            };
            run.resolved_at = resolved;
            if let Some(resolved) = resolved {
                let failing = format!(
                    "min(inetsvc_probe_success{{{}service=~\"{}\"}}) == 0",
                    self.matchers(),
                    services.join("|")
                );
                let green_since = prometheus
                    .last(&failing, run.started_at, now)?
                    .map_or(run.started_at, |t| t + step);
                let victory = remedy_at.max(resolved).max(green_since + run.hold_seconds);
                if victory <= now && victory <= run.started_at + run.time_box_seconds {
                    run.victory_at = Some(victory);
                    return self.finish(run, Outcome::Victory, victory, None);
                }
            }
        }
        if now > run.started_at + run.time_box_seconds {
            let at = run.started_at + run.time_box_seconds;
            return self.finish(
                run,
                Outcome::TimedOut,
                at,
                Some("the time box ran out".into()),
            );
        }
        Ok(())
    }

    /// Sets `run.remedy_at` when every remedy holds and the trail shows the trainee or an
    /// operator made it.
    fn judge_remedy(
        &self,
        run: &mut Run,
        scenario: &Scenario,
        trails: &BTreeMap<&str, Vec<serde_json::Value>>,
    ) -> Result<(), String> {
        let mut latest: f64 = 0.0;
        let mut applied = Vec::new();
        for remedy in &scenario.remedy {
            let settings = self
                .admin(&remedy.service, RUNNER)?
                .settings()
                .map_err(|e| format!("{}: {e}", remedy.service))?;
            let trail = trails
                .get(remedy.service.as_str())
                .map_or(&[][..], Vec::as_slice);
            let found = remedy.any.iter().find_map(|way| {
                let value = settings["settings"][&way.key].as_str()?;
                if !way.holds(value, run.offender) {
                    return None;
                }
                let change = last_change(trail, &way.key)?;
                let by = change["role"].as_str()?;
                (by == "trainee" || by == "operator").then(|| {
                    (
                        change["time"].as_f64().unwrap_or(0.0),
                        format!("{}: {} (by the {by})", remedy.service, way.describe()),
                    )
                })
            });
            let Some((at, what)) = found else {
                run.remedy_at = None;
                run.remedy.clear();
                return Ok(());
            };
            latest = latest.max(at);
            applied.push(what);
        }
        run.remedy_at = Some(latest);
        run.remedy = applied;
        Ok(())
    }

    /// Ends the run: outcome, traffic stopped, results written (the stack is reset by
    /// `stop`).
    pub fn finish(
        &self,
        run: &mut Run,
        outcome: Outcome,
        at: f64,
        reason: Option<String>,
    ) -> Result<(), String> {
        run.outcome = Some(outcome);
        run.ended_at = Some(at);
        run.reason = reason;
        self.stop_traffic(run);
        self.save(run)?;
        results::write(&self.results_dir(), run)
    }
}

impl Game {
    /// The stack's own matchers, ready to go first in a selector.
    fn matchers(&self) -> String {
        let own = self.stack.matchers.trim().trim_end_matches(',');
        if own.is_empty() {
            String::new()
        } else {
            format!("{own},")
        }
    }

    /// [`alerts_selector`] narrowed to this stack.
    fn alerts(&self, names: &[&str], services: &[&str], state: &str) -> String {
        alerts_selector(names, services, state).replacen('{', &format!("{{{}", self.matchers()), 1)
    }

    /// Whether every alert the scenario lists has fired since the start.
    pub fn all_fired(&self, run: &Run, scenario: &Scenario) -> Result<bool, String> {
        let prometheus = self.prometheus()?;
        for alert in &scenario.alerts {
            let query = self.alerts(&[&alert.alert], &[&alert.service], "firing");
            if prometheus.first(&query, run.started_at, now())?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Applies the first way of every remedy with the trainee's token (actor
    /// `autopilot`); returns what it did.
    pub fn solve(
        &self,
        run: &Run,
        scenario: &Scenario,
        token_file: &Path,
    ) -> Result<Vec<String>, String> {
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("{}: {e}", token_file.display()))?;
        let mut done = Vec::new();
        for remedy in &scenario.remedy {
            let way = remedy.any.first().ok_or("a remedy without a way")?;
            let endpoint = &self.stack.services[&remedy.service];
            let admin = AdminClient::new(
                endpoint.admin.clone(),
                token.trim().to_owned(),
                Duration::from_secs(5),
            )
            .map_err(|e| e.to_string())?
            .with_actor("autopilot");
            let value = match (&way.equals, &way.not_equals, way.at_most, &way.covers) {
                (Some(value), ..) => Some(value.clone()),
                (_, Some(_), ..) => None,
                (_, _, Some(most), _) => Some((most / 2).max(1).to_string()),
                (_, _, _, Some(_)) => Some(
                    run.offender
                        .ok_or("the offender's address is not known")?
                        .to_string(),
                ),
                _ => return Err(format!("{}: a way with no condition", scenario.name)),
            };
            match &value {
                Some(value) => admin.set_setting(&way.key, value),
                None => admin.unset_setting(&way.key),
            }
            .map_err(|e| format!("{}: {}: {e}", remedy.service, way.key))?;
            done.push(match value {
                Some(value) => format!("{}: set {} {value}", remedy.service, way.key),
                None => format!("{}: unset {}", remedy.service, way.key),
            });
        }
        Ok(done)
    }
}

/// The last change to `key` in a trail: a `settings.set`/`settings.unset` of it, or a
/// reload (a file edited, SIGHUP, `POST /admin/reload`), whichever came last.
fn last_change<'a>(trail: &'a [serde_json::Value], key: &str) -> Option<&'a serde_json::Value> {
    trail.iter().rev().find(|entry| {
        let ok = entry["outcome"].as_str() == Some("ok");
        let subject = entry["subject"].as_str().unwrap_or_default();
        let on_key = subject == key || subject.starts_with(&format!("{key}="));
        ok && match entry["action"].as_str() {
            Some("settings.set" | "settings.unset") => on_key,
            Some("reload") => true,
            _ => false,
        }
    })
}

/// Whether the trainer undid the injection by hand (cleared a fault, changed a pushed
/// setting): that is giving up, not a remedy. Returns when and what.
fn undone_by_trainer(
    scenario: &Scenario,
    trails: &BTreeMap<&str, Vec<serde_json::Value>>,
) -> Option<(f64, String)> {
    trails.iter().find_map(|(service, trail)| {
        trail.iter().find_map(|entry| {
            let by_hand = entry["role"].as_str() == Some("trainer")
                && !matches!(entry["actor"].as_str(), Some(RUNNER | DEPLOY));
            let action = entry["action"].as_str().unwrap_or_default();
            let subject = entry["subject"].as_str().unwrap_or_default();
            let undoes = action.starts_with("fault.clear")
                || (action.starts_with("settings.")
                    && scenario.push.iter().any(|p| {
                        p.service == *service
                            && (subject == p.key || subject.starts_with(&format!("{}=", p.key)))
                    }));
            (by_hand
                && undoes
                && entry["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("ok")))
            .then(|| {
                (
                    entry["time"].as_f64().unwrap_or(0.0),
                    format!("the trainer's token did `{action} {subject}` on {service}"),
                )
            })
        })
    })
}

/// Runs a command and returns its standard output; fails with its standard error.
fn run_command(command: &[String]) -> Result<String, String> {
    let (program, args) = command
        .split_first()
        .ok_or("an empty command in stack.json")?;
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            command.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
