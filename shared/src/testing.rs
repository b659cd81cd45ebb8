//! What the tests of other crates need from inside the runtime, and nothing a service
//! should use: loading a configuration the way a binary does, the pure limit functions,
//! and one TCP accept loop built exactly as a running service builds it.

use std::ffi::OsString;
use std::net::SocketAddr;

use crate::shutdown::Trigger;
use tokio_util::task::TaskTracker;

pub use crate::config::parse_addresses;
pub use crate::limits::{loop_guard, DropReason, RateLimiter};

use crate::config::{self, LoadError, Settings};
use crate::fault::Faults;
use crate::metrics::Metrics;
use crate::net::{bind_tcp, Datapath, Instruments};
use crate::options::{self, RuntimeConfig};
use crate::service::{Service, ServiceSpec};
use crate::shutdown::Shutdown;

/// A service description with no keys of its own, for tests of the runtime alone.
pub const TEST_SPEC: ServiceSpec = ServiceSpec {
    name: "fuzz",
    binary: "fuzzd",
    about: "test service",
    port: 7,
    admin_port: 9007,
    keys: &[],
    max_datagram: 512,
    clock_wrap_unix: None,
    answers_on_connect: false,
};

/// Loads `args` (without the program name) and `env` as `spec`'s binary would, and checks
/// every runtime key: `Ok` or the one-line error the binary would print.
pub fn check_config(
    spec: &ServiceSpec,
    args: impl IntoIterator<Item = String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), String> {
    let args = std::iter::once(spec.binary.to_owned())
        .chain(args)
        .map(OsString::from);
    match config::load(&options::schema(spec), args, env) {
        Ok((_, settings)) => RuntimeConfig::from_settings(&settings)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(LoadError::Config(error)) => Err(error.to_string()),
        Err(LoadError::Cli(error)) => Err(error.kind().to_string()),
    }
}

/// One TCP accept loop of `S` on a loopback port, with `S`'s default settings (the flags
/// in `args` on top), metrics on, tracing off: the same construction a running service
/// uses, without signals, the admin port or UDP. Dropping it stops accepting.
pub struct TcpLoop {
    address: SocketAddr,
    metrics: Metrics,
    stop: Trigger,
}

impl TcpLoop {
    /// Starts the loop on `runtime`; panics on a bad flag (a bug in the test).
    pub fn start<S: Service>(runtime: &tokio::runtime::Runtime, args: &[&str]) -> Self {
        let spec = &S::SPEC;
        let args = std::iter::once(spec.binary)
            .chain(["--tcp-listen", "127.0.0.1:0"])
            .chain(args.iter().copied())
            .map(OsString::from);
        let (_, settings) = config::load(&options::schema(spec), args, std::iter::empty())
            .unwrap_or_else(|e| panic!("test flags do not load: {e:?}"));
        let config = RuntimeConfig::from_settings(&settings).expect("test flags check");
        let service = S::from_settings(&settings).expect("service settings");
        let metrics = Metrics::new(spec.name, crate::run::VERSION, spec.answers_on_connect);
        let faults = Faults::new(None, None);
        let datapath = Datapath::new(
            service,
            spec,
            config.tcp,
            config.udp.clone(),
            config.deny_sources.clone(),
            Instruments {
                metrics: Some(&metrics),
                traces: None,
                exporting: false,
                faults: &faults,
            },
            Shutdown::new(),
        );
        let listener = runtime
            .block_on(async { bind_tcp("tcp_listen", config.tcp_listen[0]) })
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("bound address");
        let stop = Trigger::new();
        let server = datapath.tcp(listener);
        runtime.spawn(server.run(stop.clone(), TaskTracker::new()));
        TcpLoop {
            address,
            metrics,
            stop,
        }
    }

    /// Where it accepts.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its metrics, in the Prometheus text format.
    pub fn metrics(&self) -> String {
        self.metrics.render()
    }
}

impl Drop for TcpLoop {
    fn drop(&mut self) {
        self.stop.fire();
    }
}

/// The default settings of `spec`'s binary, for tests of a service's own keys.
pub fn default_settings(spec: &ServiceSpec) -> Settings {
    Settings::defaults(&options::schema(spec))
}

/// Parses `;`-separated fault specs as the `faults` key, the admin API and `inetsvc fault`
/// do: how many, or the one-line reason.
pub fn fault_specs(text: &str) -> Result<usize, String> {
    crate::fault::FaultRequest::parse_list(text).map(|requests| requests.len())
}

/// The admin HTTP routes exactly as a service serves them (token check, body and time
/// bounds, Host guard), driven one request at a time in-process, for fuzzing the admin
/// request path. The API's token is [`AdminHarness::TOKEN`].
pub struct AdminHarness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

impl AdminHarness {
    /// The trainer's bearer token the harness's API accepts.
    pub const TOKEN: &'static str = "fuzz-token-0123456789abcdef";
    /// The trainee's bearer token the harness's API accepts.
    pub const TRAINEE_TOKEN: &'static str = "fuzz-trainee-0123456789abcdef";

    /// Builds the routes of a service with the admin API on and default limits.
    pub fn new() -> Self {
        let spec = TEST_SPEC;
        let settings = default_settings(&spec);
        let limits = crate::admin::AdminLimits::from_settings(&settings).expect("default limits");
        let metrics = Metrics::new(spec.name, crate::run::VERSION, spec.answers_on_connect);
        // No reloader behind it: a reload request is answered 503.
        let (reload, _) = tokio::sync::mpsc::channel(1);
        let state = crate::admin::AdminState {
            service: spec.name,
            version: crate::run::VERSION,
            metrics: Some(metrics.clone()),
            readiness: crate::shutdown::Readiness::new(),
            faults: Faults::new(Some(metrics.fault_gauge()), None),
            api: Some(crate::admin::AdminApi {
                token: Self::TOKEN.to_owned(),
                trainee_token: Some(Self::TRAINEE_TOKEN.to_owned()),
            }),
            reload,
            audit: crate::admin::Audit::default(),
        };
        let router = crate::admin::bounded_router(state, &limits, Some(metrics));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        AdminHarness { runtime, router }
    }

    /// Sends one request and returns its status code. `head` lines are `Name: value`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        head: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Option<u16> {
        use hyper::service::Service as _;
        let mut request = axum::http::Request::builder().method(method).uri(path);
        for (name, value) in head {
            request = request.header(*name, *value);
        }
        let request = request.body(axum::body::Body::from(body)).ok()?;
        let service = hyper_util::service::TowerToHyperService::new(self.router.clone());
        let response = self.runtime.block_on(service.call(request)).ok()?;
        Some(response.status().as_u16())
    }
}

impl Default for AdminHarness {
    fn default() -> Self {
        AdminHarness::new()
    }
}
