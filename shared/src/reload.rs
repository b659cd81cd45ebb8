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
//!   old value stays in force.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::admin::{api, AdminLimits};
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
}

/// A request for a reload from the admin API, answered with its outcome.
pub type Request = oneshot::Sender<Result<Outcome, String>>;

/// Everything a reload reads and changes.
pub(crate) struct Reloader {
    schema: Schema,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    /// The value in force of every key, as text.
    in_force: BTreeMap<&'static str, String>,
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
        Reloader {
            in_force: texts(&start.settings),
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

    /// Reads and checks the configuration again and applies what may change live.
    pub(crate) fn reload(&mut self) -> Result<Outcome, String> {
        let result = self.try_reload();
        if let Some(metrics) = &self.metrics {
            metrics.set_reload(self.generation, result.is_ok(), unix_now());
        }
        result
    }

    fn try_reload(&mut self) -> Result<Outcome, String> {
        let (_, settings) = match config::load(&self.schema, self.args.clone(), self.env.clone()) {
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
        self.controls.apply(tcp, config.udp.clone(), &traces);
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
        }
        Ok(Outcome {
            generation: self.generation,
            applied,
            restart_needed,
        })
    }
}

/// Runs one reload and logs what it did.
fn reload_logged(reloader: &Mutex<Reloader>, cause: &'static str) -> Result<Outcome, String> {
    let result = reloader.lock().unwrap_or_else(|p| p.into_inner()).reload();
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
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(FILE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = stamp(&file);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = hangup.recv() => {
                let _ = reload_logged(&reloader, "SIGHUP");
            }
            Some(reply) = requests.recv() => {
                let _ = reply.send(reload_logged(&reloader, "admin API"));
            }
            _ = tick.tick(), if file.is_some() => {
                let now = stamp(&file);
                if now != seen {
                    seen = now;
                    let _ = reload_logged(&reloader, "config file changed");
                }
            }
        }
    }
}
