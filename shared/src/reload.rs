//! Reloading the configuration while serving (docs/architecture.md, "Reloading"), as
//! xinetd and Prometheus do on SIGHUP, and also on `POST /admin/reload` and when the
//! `--config` file changes (a Kubernetes ConfigMap edit):
//!
//! - the file and the environment are read again and checked whole, exactly as at start;
//!   anything invalid refuses the reload and the configuration in force stays;
//! - keys marked live (caps, timeouts, rate limits, loop guard, log level, sampling,
//!   faults, drain timing) apply to new work at once; connections in progress keep theirs
//!   and none is dropped;
//! - any other key that changed is named in one line each: it needs a restart, and its
//!   old value stays in force;
//! - a live key can also be set through the admin API (`PUT /admin/settings/KEY`): such a
//!   value is a layer above the flags, kept across reloads until it is unset, like
//!   Envoy's runtime overrides; a value the checks refuse is not kept.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::admin::{api, AdminLimits, Audit};
use crate::config::{self, ConfigError, LoadError, Schema, Settings};
use crate::fault::{self, Faults};
use crate::logging;
use crate::metrics::Metrics;
use crate::net::Controls;
use crate::options::RuntimeConfig;
use crate::telemetry::TraceConfig;

/// How often the `--config` file is looked at for a change.
const FILE_POLL: Duration = Duration::from_secs(2);

/// What a reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The configuration's generation now.
    pub generation: u64,
    /// Live keys that took a new value.
    pub applied: Vec<&'static str>,
    /// Keys that changed but need a restart; their old values stay.
    pub restart_needed: Vec<&'static str>,
    /// Every live key's value in force (secrets left out).
    pub settings: BTreeMap<&'static str, String>,
    /// The values set through the admin API, above every other layer.
    pub overrides: BTreeMap<String, String>,
}

/// What the admin API asks of the reloader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Read the configuration again.
    Reload,
    /// Only show the settings in force.
    Show,
    /// Set a live key above every other layer.
    Set(String, String),
    /// Drop the admin API's value of a key: the configuration's applies again.
    Unset(String),
}

/// A request from the admin API, answered with its outcome.
pub struct Request {
    /// What to do.
    pub change: Change,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<Outcome, String>>,
}

/// Everything a reload reads and changes.
pub(crate) struct Reloader {
    schema: Schema,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    /// The value in force of every key, as text.
    in_force: BTreeMap<&'static str, String>,
    /// Values set through the admin API.
    overrides: BTreeMap<String, String>,
    /// The runtime options in force (drain timing is read from here at shutdown).
    config: RuntimeConfig,
    controls: Controls,
    faults: Faults,
    metrics: Option<Metrics>,
    /// Checks the service's own keys the way the service would at start.
    check_service: fn(&Settings) -> Result<(), ConfigError>,
    /// Fits a TCP cap to the open-file limit, as at start.
    fit_cap: Box<dyn Fn(usize) -> usize + Send>,
    generation: u64,
}

/// What the reloader starts from: the configuration as the service started with it.
pub(crate) struct Start {
    pub schema: Schema,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub settings: Settings,
    pub config: RuntimeConfig,
    pub controls: Controls,
    pub faults: Faults,
    pub metrics: Option<Metrics>,
    pub check_service: fn(&Settings) -> Result<(), ConfigError>,
    pub fit_cap: Box<dyn Fn(usize) -> usize + Send>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn texts(settings: &Settings) -> BTreeMap<&'static str, String> {
    settings
        .keys()
        .map(|key| (key.name, settings.text(key.name).unwrap_or_default()))
        .collect()
}

impl Reloader {
    pub(crate) fn new(start: Start) -> Self {
        if let Some(metrics) = &start.metrics {
            metrics.set_reload(1, true, unix_now());
        }
        let in_force = texts(&start.settings);
        start.faults.set_settings(in_force.clone());
        Reloader {
            in_force,
            overrides: BTreeMap::new(),
            schema: start.schema,
            args: start.args,
            env: start.env,
            config: start.config,
            controls: start.controls,
            faults: start.faults,
            metrics: start.metrics,
            check_service: start.check_service,
            fit_cap: start.fit_cap,
            generation: 1,
        }
    }

    /// The drain delay and shutdown timeout in force.
    pub(crate) fn drain_timing(&self) -> (Duration, Duration) {
        (self.config.drain_delay, self.config.shutdown_timeout)
    }

    /// Carries out what the admin API asked.
    pub(crate) fn change(&mut self, change: &Change) -> Result<Outcome, String> {
        let (key, value) = match change {
            Change::Reload => return self.reload(),
            Change::Show => return Ok(self.outcome(Vec::new(), Vec::new())),
            Change::Set(key, value) => (key, Some(value)),
            Change::Unset(key) => (key, None),
        };
        let Some(known) = self.schema_key(key) else {
            return Err(format!("no key `{key}`"));
        };
        if !known.live || known.secret {
            return Err(format!(
                "`{key}` is not a live key: it takes effect only after a restart"
            ));
        }
        let before = self.overrides.clone();
        match value {
            Some(value) => self.overrides.insert(key.clone(), value.clone()),
            None => self.overrides.remove(key),
        };
        let result = self.reload();
        if result.is_err() {
            // Refused values are not kept: the next reload must not fail on them.
            self.overrides = before;
        }
        result
    }

    fn schema_key(&self, name: &str) -> Option<crate::config::Key> {
        self.schema
            .tables
            .iter()
            .flat_map(|table| table.iter())
            .find(|key| key.name == name)
            .copied()
    }

    fn outcome(&self, applied: Vec<&'static str>, restart_needed: Vec<&'static str>) -> Outcome {
        let settings = self
            .in_force
            .iter()
            .filter(|(name, _)| self.schema_key(name).is_some_and(|k| k.live && !k.secret))
            .map(|(name, value)| (*name, value.clone()))
            .collect();
        Outcome {
            generation: self.generation,
            applied,
            restart_needed,
            settings,
            overrides: self.overrides.clone(),
        }
    }

    /// Reads and checks the configuration again and applies what may change live.
    pub(crate) fn reload(&mut self) -> Result<Outcome, String> {
        let result = self.try_reload();
        if let Some(metrics) = &self.metrics {
            metrics.set_reload(self.generation, result.is_ok(), unix_now());
        }
        result
    }

    fn try_reload(&mut self) -> Result<Outcome, String> {
        let loaded = config::load_overridden(
            &self.schema,
            self.args.clone(),
            self.env.clone(),
            &self.overrides,
        );
        let (_, settings) = match loaded {
            Ok(loaded) => loaded,
            Err(LoadError::Config(error)) => return Err(error.to_string()),
            Err(LoadError::Cli(error)) => return Err(error.kind().to_string()),
        };
        // Checked whole, exactly as at start: one invalid key refuses everything.
        let env: HashMap<String, String> = self.env.iter().cloned().collect();
        let config = RuntimeConfig::from_settings(&settings).map_err(|e| e.to_string())?;
        let traces = TraceConfig::from_settings(&settings, &env).map_err(|e| e.to_string())?;
        let faults = fault::initial_faults(&settings).map_err(|e| e.to_string())?;
        api::admin_api(&settings).map_err(|e| e.to_string())?;
        AdminLimits::from_settings(&settings).map_err(|e| e.to_string())?;
        (self.check_service)(&settings).map_err(|e| e.to_string())?;

        let new = texts(&settings);
        let (mut applied, mut restart_needed) = (Vec::new(), Vec::new());
        for key in settings.keys() {
            if new.get(key.name) != self.in_force.get(key.name) {
                if key.live {
                    applied.push(key.name);
                } else {
                    restart_needed.push(key.name);
                }
            }
        }
        let mut tcp = config.tcp;
        tcp.max_connections = (self.fit_cap)(tcp.max_connections);
        self.controls.apply(
            tcp,
            config.udp.clone(),
            config.deny_sources.clone(),
            &traces,
        );
        if let Some(metrics) = &self.metrics {
            metrics.set_limits(&tcp, &config.udp);
        }
        if applied.contains(&"log_level") {
            logging::set_level(&config.log_level)?;
        }
        if applied.contains(&"faults") {
            self.faults.replace_config(faults);
        }
        self.config.drain_delay = config.drain_delay;
        self.config.shutdown_timeout = config.shutdown_timeout;
        for name in &applied {
            if let Some(value) = new.get(name) {
                self.in_force.insert(name, value.clone());
            }
        }
        if !applied.is_empty() {
            self.generation += 1;
            self.faults.set_settings(self.in_force.clone());
        }
        Ok(self.outcome(applied, restart_needed))
    }
}

/// Runs one reload (or admin API change) and logs what it did.
fn reload_logged(
    reloader: &Mutex<Reloader>,
    cause: &'static str,
    change: &Change,
) -> Result<Outcome, String> {
    let result = reloader
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .change(change);
    if *change == Change::Show {
        return result;
    }
    match &result {
        Ok(outcome) => {
            for key in &outcome.restart_needed {
                tracing::warn!(
                    key,
                    cause,
                    "changed, but takes effect only after a restart; the value in force stays"
                );
            }
            tracing::info!(
                cause,
                generation = outcome.generation,
                applied = ?outcome.applied,
                restart_needed = ?outcome.restart_needed,
                "configuration reloaded"
            );
        }
        Err(error) => {
            tracing::error!(cause, %error, "reload refused; the configuration in force stays");
        }
    }
    result
}

/// The size and time of the file, to notice an edit (a ConfigMap update swaps a symlink,
/// which this follows).
fn stamp(file: &Option<PathBuf>) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(file.as_ref()?).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Reloads on SIGHUP, on a request from the admin API, and when the `--config` file
/// changes, until `stop`.
pub(crate) async fn watch(
    reloader: Arc<Mutex<Reloader>>,
    mut hangup: Signal,
    mut requests: mpsc::Receiver<Request>,
    file: Option<PathBuf>,
    audit: Audit,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(FILE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = stamp(&file);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = hangup.recv() => {
                let result = reload_logged(&reloader, "SIGHUP", &Change::Reload);
                audit.record_local("SIGHUP", &result);
            }
            Some(request) = requests.recv() => {
                let _ = request.reply.send(reload_logged(&reloader, "admin API", &request.change));
            }
            _ = tick.tick(), if file.is_some() => {
                let now = stamp(&file);
                if now != seen {
                    seen = now;
                    let result = reload_logged(&reloader, "config file changed", &Change::Reload);
                    audit.record_local("config file", &result);
                }
            }
        }
    }
}
