//! A service's whole life: load the configuration, bind, serve, drain, exit.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::api::{self, AdminApi};
use crate::admin::{self, healthcheck, AdminLimits, AdminState};
use crate::config::{self, ConfigError, LoadError, Mode};
use crate::fault::{self, FaultRequest, Faults};
use crate::limits;
use crate::logging;
use crate::metrics::Metrics;
use crate::net::{self, bind_tcp, bind_udp, Datapath, Instruments};
use crate::options::{self, RuntimeConfig};
use crate::reload::{self, Reloader};
use crate::service::{Service, ServiceSpec};
use crate::shutdown::{self, Phase, Readiness, Shutdown, Trigger};
use crate::telemetry::{self, TraceConfig};

/// The version every binary reports: the workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit code for an unusable configuration or address (docs/architecture.md, "Rules").
const EXIT_CONFIG: i32 = 2;

/// How long the admin server may take to close its keep-alive connections at exit.
const ADMIN_CLOSE: Duration = Duration::from_secs(1);

/// The `main` of a service binary: runs it with the process's arguments and environment
/// and exits with its code.
pub fn main<S: Service>() -> ! {
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    std::process::exit(run::<S>(std::env::args_os(), env))
}

/// Runs a service and returns its exit code: 0 after a clean shutdown (or help, version,
/// print-config, a passing healthcheck), 1 on a failing healthcheck or runtime failure,
/// 2 on a configuration or bind error.
pub fn run<S: Service>(
    args: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (String, String)>,
) -> i32 {
    let spec = &S::SPEC;
    let fail = |error: ConfigError| {
        eprintln!("{}: {error}", spec.binary);
        EXIT_CONFIG
    };
    let env: Vec<(String, String)> = env.into_iter().collect();
    let args: Vec<OsString> = args.into_iter().collect();
    let schema = options::schema(spec);
    let (mode, settings) = match config::load(&schema, args.clone(), env.iter().cloned()) {
        Ok(loaded) => loaded,
        Err(LoadError::Cli(error)) => {
            let _ = error.print();
            return error.exit_code();
        }
        Err(LoadError::Config(error)) => return fail(error),
    };
    let config = match RuntimeConfig::from_settings(&settings) {
        Ok(config) => config,
        Err(error) => return fail(error),
    };
    let env_list = env.clone();
    let env: HashMap<String, String> = env.into_iter().collect();
    let traces = match TraceConfig::from_settings(&settings, &env) {
        Ok(traces) => traces,
        Err(error) => return fail(error),
    };
    let service = match S::from_settings(&settings) {
        Ok(service) => service,
        Err(error) => return fail(error),
    };
    let faults = match fault::initial_faults(&settings) {
        Ok(faults) => faults,
        Err(error) => return fail(error),
    };
    let admin_limits = match AdminLimits::from_settings(&settings) {
        Ok(limits) => limits,
        Err(error) => return fail(error),
    };
    let api = match api::admin_api(&settings) {
        Ok(api) => api,
        Err(error) => return fail(error),
    };
    if api.is_some() && config.admin_listen.is_none() {
        return fail(ConfigError::invalid(
            "admin_api",
            "the admin API is served on admin_listen, which is off; set admin_listen or turn admin_api off",
        ));
    }
    let training = Training { faults, api };
    let print = matches!(mode, Mode::PrintConfig).then(|| settings.to_toml());
    let plane = Plane {
        training,
        admin: admin_limits,
        reload: ReloadInputs {
            schema,
            args,
            env: env_list,
            settings,
        },
    };
    match mode {
        Mode::PrintConfig => {
            print!("{}", print.unwrap_or_default());
            0
        }
        Mode::Healthcheck => match healthcheck::check(config.admin_listen) {
            Ok(()) => 0,
            Err(reason) => {
                eprintln!("{}: unhealthy: {reason}", spec.binary);
                1
            }
        },
        Mode::Serve => {
            let runtime = match net::runtime(config.tcp.concurrency) {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("{}: cannot start the runtime: {error}", spec.binary);
                    return 1;
                }
            };
            let code = runtime.block_on(serve(spec, config, traces, env, service, plane));
            // Connection tasks cut at the deadline must not hold the exit.
            runtime.shutdown_timeout(Duration::from_millis(100));
            code
        }
    }
}

/// What is not the datapath: the admin server's budget, fault injection, and what a
/// reload starts from.
struct Plane {
    training: Training,
    admin: AdminLimits,
    reload: ReloadInputs,
}

/// The configuration as the service started with it, to be read again on a reload.
struct ReloadInputs {
    schema: config::Schema,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    settings: config::Settings,
}

/// Checks `S`'s own keys as `S` would at start.
fn check_service<S: Service>(settings: &config::Settings) -> Result<(), ConfigError> {
    S::from_settings(settings).map(|_| ())
}

/// Fault injection for training: the faults set at start and the admin API, if on.
struct Training {
    faults: Vec<FaultRequest>,
    api: Option<AdminApi>,
}

/// The sockets of a service, all bound before anything is served, so that a bad address
/// fails the start instead of leaving a half-working service.
struct Bound {
    tcp: Vec<tokio::net::TcpListener>,
    udp: Vec<tokio::net::UdpSocket>,
    admin: Option<tokio::net::TcpListener>,
}

fn bind_all(config: &RuntimeConfig) -> Result<Bound, ConfigError> {
    Ok(Bound {
        tcp: config
            .tcp_listen
            .iter()
            .map(|&a| bind_tcp("tcp_listen", a))
            .collect::<Result<_, _>>()?,
        udp: config
            .udp_listen
            .iter()
            .map(|&a| bind_udp("udp_listen", a))
            .collect::<Result<_, _>>()?,
        admin: config
            .admin_listen
            .map(|a| bind_tcp("admin_listen", a))
            .transpose()?,
    })
}

/// Space-separated local addresses, for the startup line.
fn addresses<'a>(sockets: impl Iterator<Item = std::io::Result<SocketAddr>> + 'a) -> String {
    sockets
        .filter_map(Result::ok)
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn serve<S: Service>(
    spec: &ServiceSpec,
    config: RuntimeConfig,
    traces: TraceConfig,
    env: HashMap<String, String>,
    service: S,
    plane: Plane,
) -> i32 {
    let metrics = config
        .metrics
        .then(|| Metrics::new(spec.name, VERSION, spec.answers_on_connect));
    let counters = metrics
        .as_ref()
        .map(Metrics::span_counters)
        .unwrap_or_default();
    // Spans are exported only with tracing on and an endpoint configured.
    let provider = if config.tracing {
        match telemetry::provider(&traces, spec.name, VERSION, &env, counters) {
            Ok(provider) => provider,
            Err(error) => {
                eprintln!("{}: {error}", spec.binary);
                return EXIT_CONFIG;
            }
        }
    } else {
        None
    };
    logging::init(&config, provider.as_ref());
    let code = match bind_all(&config) {
        Ok(bound) => {
            let exporting = provider.is_some();
            let shared = Shared {
                traces: &traces,
                exporting,
                metrics,
                plane,
            };
            serve_until_signal(spec, &config, shared, bound, service).await
        }
        Err(error) => {
            eprintln!("{}: {error}", spec.binary);
            EXIT_CONFIG
        }
    };
    if let Some(provider) = provider {
        telemetry::shutdown(provider).await;
    }
    if code != EXIT_CONFIG {
        tracing::info!("stopped");
    }
    code
}

/// What the serving loop gets besides the configuration and the sockets.
struct Shared<'a> {
    traces: &'a TraceConfig,
    /// Whether spans are exported.
    exporting: bool,
    metrics: Option<Metrics>,
    plane: Plane,
}

async fn serve_until_signal<S: Service>(
    spec: &ServiceSpec,
    config: &RuntimeConfig,
    shared: Shared<'_>,
    bound: Bound,
    service: S,
) -> i32 {
    let Shared {
        traces,
        exporting,
        metrics,
        plane:
            Plane {
                training,
                admin: admin_limits,
                reload: reload_inputs,
            },
    } = shared;
    let (mut signals, hangup) = match shutdown::Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot listen for signals; stopping");
            return 1;
        }
    };
    let mut tcp = config.tcp;
    // The admin port's descriptors are kept out of the data listeners' reach.
    let admin_reserve = if bound.admin.is_some() {
        admin_limits.max_connections
    } else {
        0
    };
    tcp.max_connections = fitted_connection_cap(tcp.max_connections, admin_reserve);
    if let Some(metrics) = &metrics {
        metrics.set_limits(&tcp, &config.udp);
    }
    let readiness = Readiness::new();
    let wrap_at = spec
        .clock_wrap_unix
        .map(|unix| UNIX_EPOCH + Duration::from_secs(unix));
    let faults = Faults::new(metrics.as_ref().map(Metrics::fault_gauge), wrap_at);
    for request in training.faults {
        faults.set(request, "config");
    }
    let finishing = Shutdown::new();
    let datapath = Datapath::new(
        service,
        spec,
        tcp,
        config.udp.clone(),
        config.deny_sources.clone(),
        Instruments {
            metrics: metrics.as_ref(),
            traces: config.tracing.then_some(traces),
            exporting,
            faults: &faults,
        },
        finishing.clone(),
    );
    let stop_accepting = Trigger::new();
    let stop_admin = CancellationToken::new();
    let connections = TaskTracker::new();

    let config_file = reload_inputs
        .settings
        .file()
        .map(std::path::Path::to_path_buf);
    let reloader = Arc::new(Mutex::new(Reloader::new(reload::Start {
        schema: reload_inputs.schema,
        args: reload_inputs.args,
        env: reload_inputs.env,
        settings: reload_inputs.settings,
        config: config.clone(),
        controls: datapath.controls(),
        faults: faults.clone(),
        metrics: metrics.clone(),
        check_service: check_service::<S>,
        fit_cap: Box::new(move |requested| fitted_connection_cap(requested, admin_reserve)),
    })));
    let (reload_requests, requests) = tokio::sync::mpsc::channel(4);
    let audit = admin::Audit::default();
    tokio::spawn(reload::watch(
        Arc::clone(&reloader),
        hangup,
        requests,
        config_file,
        audit.clone(),
        stop_admin.clone(),
    ));

    let tcp_addresses = addresses(bound.tcp.iter().map(|l| l.local_addr()));
    let udp_addresses = addresses(bound.udp.iter().map(|s| s.local_addr()));
    let admin_addresses = addresses(bound.admin.iter().map(|l| l.local_addr()));

    let admin = bound.admin.map(|listener| {
        let state = AdminState {
            service: spec.name,
            version: VERSION,
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            faults: faults.clone(),
            api: training.api.clone(),
            reload: reload_requests.clone(),
            audit: audit.clone(),
        };
        tokio::spawn(admin::serve(
            listener,
            state,
            admin_limits,
            stop_admin.clone(),
        ))
    });
    tokio::spawn(faults.clone().expire_until(stop_admin.clone()));

    let mut loops = Vec::new();
    for listener in bound.tcp {
        let server = datapath.tcp(listener);
        loops.push(tokio::spawn(
            server.run(stop_accepting.clone(), connections.clone()),
        ));
    }
    let own_ports = net::own_ports(&bound.udp);
    for socket in bound.udp {
        let server = datapath.udp(socket, &own_ports);
        loops.push(tokio::spawn(
            server.run(stop_accepting.clone(), connections.clone()),
        ));
    }

    readiness.set(Phase::Serving);
    tracing::info!(
        service = spec.name,
        version = VERSION,
        tcp = %tcp_addresses,
        traces = exporting,
        udp = %udp_addresses,
        admin = %admin_addresses,
        metrics = config.metrics,
        tcp_concurrency = %config.tcp.concurrency,
        udp_concurrency = %config.udp.concurrency,
        admin_api = training.api.is_some(),
        "serving"
    );

    let signal = signals.first_stop().await;
    readiness.set(Phase::Draining);
    // The drain timing a reload may have changed.
    let (drain_delay, shutdown_timeout) = reloader
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain_timing();
    tracing::info!(signal, ?drain_delay, "draining: not ready, still serving");
    // A second SIGTERM or SIGINT is an operator who will not wait: exit at once.
    tokio::spawn(signals.exit_on_second_stop());
    let code = 0;
    tokio::time::sleep(drain_delay).await;
    drain(
        shutdown_timeout,
        &stop_accepting,
        &connections,
        loops,
        &finishing,
    )
    .await;
    stop_admin.cancel();
    if let Some(admin) = admin {
        let _ = tokio::time::timeout(ADMIN_CLOSE, admin).await;
    }
    code
}

/// Stops accepting and waits for what is in flight, at most `timeout`: one deadline for
/// everything, including a connection an iterative accept loop is still serving. Sessions
/// still open shortly before it are asked to finish; what is left at it is cut.
async fn drain(
    timeout: Duration,
    stop_accepting: &Trigger,
    connections: &TaskTracker,
    loops: Vec<tokio::task::JoinHandle<()>>,
    finishing: &Shutdown,
) {
    stop_accepting.fire();
    connections.close();
    tracing::info!(
        in_flight = connections.len(),
        ?timeout,
        "stopped accepting; finishing connections"
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let lead = shutdown::finish_lead(timeout);
    let ask_to_finish = {
        let finishing = finishing.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline - lead).await;
            finishing.request(deadline);
        })
    };
    let finished = tokio::time::timeout_at(deadline, async {
        for handle in loops {
            let _ = handle.await;
        }
        connections.wait().await;
    })
    .await;
    ask_to_finish.abort();
    if finished.is_err() {
        tracing::warn!(
            cut = connections.len(),
            "shutdown_timeout reached; closing the connections still open"
        );
    }
}

/// `max_connections`, lowered (with a warning) to what the open-file limit can hold once
/// it is raised as far as it goes, with `admin_reserve` descriptors kept for the admin port.
fn fitted_connection_cap(requested: usize, admin_reserve: usize) -> usize {
    let Some(fd_limit) = limits::raise_fd_limit() else {
        return requested;
    };
    let cap = limits::connection_cap(requested, fd_limit, admin_reserve as u64);
    if cap < requested {
        tracing::warn!(
            requested,
            max_connections = cap,
            fd_limit,
            "max_connections lowered to fit the open-file limit; raise `ulimit -n` to serve more"
        );
    }
    cap
}
