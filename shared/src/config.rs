//! Configuration: defaults → optional TOML file (`--config`) → environment (`INETSVC_…`) →
//! command-line flags, layered by the `config` crate and checked into typed values.
//!
//! One table of [`Key`]s drives everything: the defaults, one `--flag` per key, the
//! `--help` text, the accepted environment variables, the unknown-key check and
//! `--print-config`. Every error names the key (or file, or variable) and says what would
//! be accepted, and the binaries exit with code 2 on it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, Command};

use crate::service::ServiceSpec;

/// Prefix of the environment variables that set keys: `INETSVC_TCP_LISTEN` sets `tcp_listen`.
pub const ENV_PREFIX: &str = "INETSVC_";

/// One setting: its name in TOML (`tcp_listen`), its default and its help text.
///
/// The flag is the name with dashes (`--tcp-listen`), the variable the name upper-cased
/// behind [`ENV_PREFIX`]. In a default, `{port}` and `{admin_port}` stand for the service's
/// ports from its [`ServiceSpec`].
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Name in the TOML file, snake_case.
    pub name: &'static str,
    /// Default value, as it would be written on the command line.
    pub default: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
}

/// The settings every service understands.
pub const RUNTIME_KEYS: &[Key] = &[
    Key {
        name: "tcp_listen",
        default: "[::]:{port}",
        help: "TCP addresses to serve, comma-separated IP:PORT; `off` disables TCP. [::] is dual-stack (IPv4 too)",
    },
    Key {
        name: "udp_listen",
        default: "[::]:{port}",
        help: "UDP addresses to serve, comma-separated IP:PORT; `off` disables UDP",
    },
    Key {
        name: "admin_listen",
        default: "[::]:{admin_port}",
        help: "Admin HTTP address (/metrics, /healthz, /readyz, /version); `off` disables it",
    },
    Key {
        name: "log_format",
        default: "text",
        help: "Log format on stderr: `text` or `json`",
    },
    Key {
        name: "log_level",
        default: "info",
        help: "Log filter, tracing EnvFilter syntax (`info`, `debug`, `inetsvc_runtime=debug`)",
    },
    Key {
        name: "metrics",
        default: "true",
        help: "Collect Prometheus metrics; `false` gives the uninstrumented baseline",
    },
    Key {
        name: "tracing",
        default: "true",
        help: "Open one span per TCP connection (and sampled datagram), exported over OTLP when an endpoint is set; `false` gives the uninstrumented baseline",
    },
    Key {
        name: "tcp_concurrency",
        default: "concurrent",
        help: "Server design for TCP (book ch. 8-13): `iterative`, `concurrent` (a task per connection), `threaded` (a thread per connection) or `single-thread` (one readiness-driven thread)",
    },
    Key {
        name: "udp_concurrency",
        default: "iterative",
        help: "Server design for UDP: `iterative` (answer each datagram in turn) or `concurrent` (a task per datagram)",
    },
    Key {
        name: "max_connections",
        default: "4096",
        help: "Most TCP connections served at once; more are refused and counted",
    },
    Key {
        name: "max_connections_per_source",
        default: "256",
        help: "Most TCP connections served at once from one source IP address",
    },
    Key {
        name: "idle_timeout",
        default: "60s",
        help: "Close a TCP connection after this long without receiving anything",
    },
    Key {
        name: "write_timeout",
        default: "10s",
        help: "Close a TCP connection when a write makes no progress for this long",
    },
    Key {
        name: "max_connection_time",
        default: "1h",
        help: "Close a TCP connection after this long, however busy",
    },
    Key {
        name: "close_linger",
        default: "2s",
        help: "After the answer, half-close and discard input for at most this long before closing, so the client gets the answer and not a reset",
    },
    Key {
        name: "buffer_size",
        default: "16384",
        help: "Bytes of TCP read buffer per busy connection (idle connections hold none)",
    },
    Key {
        name: "udp_loop_guard",
        default: "true",
        help: "Drop datagrams from source ports below 1024, 2049 and this service's own ports, and from non-unicast sources (CERT CA-1996-01)",
    },
    Key {
        name: "udp_rate_per_source",
        default: "500",
        help: "UDP replies per second to one source IP address; 0 means unlimited",
    },
    Key {
        name: "udp_burst_per_source",
        default: "1000",
        help: "UDP replies one source may get in a burst above its rate",
    },
    Key {
        name: "udp_rate_global",
        default: "50000",
        help: "UDP replies per second in all; 0 means unlimited",
    },
    Key {
        name: "udp_limiter_sources",
        default: "65536",
        help: "Most source addresses the UDP rate limiter tracks (bounds its memory)",
    },
    Key {
        name: "drain_delay",
        default: "0s",
        help: "On SIGTERM, report not-ready and keep serving this long before refusing new work",
    },
    Key {
        name: "shutdown_timeout",
        default: "30s",
        help: "After the drain delay, wait at most this long for connections in flight",
    },
];

/// A configuration error: one line naming the key, file or variable, and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A key has a value that cannot be used.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, as in the TOML file.
        key: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// A key that no part of this service knows.
    #[error("{origin}: unknown key `{key}`; known keys: {known}")]
    UnknownKey {
        /// Where it came from: the file or the variable.
        origin: String,
        /// The unknown key.
        key: String,
        /// Every key this service knows, comma-separated.
        known: String,
    },
    /// The configuration file cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file as given to `--config`.
        path: String,
        /// The reader's or parser's message.
        reason: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key`.
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run the service.
    Serve,
    /// Print the effective configuration as TOML and exit.
    PrintConfig,
    /// Probe the running service's `/readyz` and exit 0 only on 200.
    Healthcheck,
}

/// Why loading stopped: clap's own outcome (help, version, usage error) or a config error.
#[derive(Debug)]
pub enum LoadError {
    /// `--help`, `--version` or a usage error; clap prints it and picks the exit code.
    Cli(clap::Error),
    /// An invalid configuration (exit code 2).
    Config(ConfigError),
}

impl From<ConfigError> for LoadError {
    fn from(error: ConfigError) -> Self {
        LoadError::Config(error)
    }
}

/// The layered settings of one service, readable key by key with typed, checked accessors.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The layered values.
    values: config::Config,
    /// Every key this service knows, runtime keys first, with its default resolved.
    keys: Vec<(Key, String)>,
}

/// Every key of `spec` (runtime and service keys) with its default resolved.
fn resolved_keys(spec: &ServiceSpec) -> Vec<(Key, String)> {
    RUNTIME_KEYS
        .iter()
        .chain(crate::telemetry::TRACE_KEYS)
        .chain(crate::fault::FAULT_KEYS)
        .chain(spec.keys)
        .map(|key| {
            let default = key
                .default
                .replace("{port}", &spec.port.to_string())
                .replace("{admin_port}", &spec.admin_port.to_string());
            (*key, default)
        })
        .collect()
}

/// The command line of a service binary, built from its keys.
pub fn command(spec: &ServiceSpec) -> Command {
    let mut command = Command::new(spec.binary)
        .version(env!("CARGO_PKG_VERSION"))
        .about(spec.about)
        .after_help(
            "Every option can also be set in the TOML file (`tcp_listen = \"[::]:7007\"`) or \
             the environment (INETSVC_TCP_LISTEN). Flags beat the environment, which beats the \
             file, which beats the defaults. Durations take units: 500ms, 10s, 5m, 1h.",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .global(true)
                .help("TOML file with any of the keys below"),
        )
        .arg(
            Arg::new("print-config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("Print the effective configuration as TOML and exit"),
        )
        .subcommand(
            Command::new("healthcheck").about(
                "Exit 0 if this service's /readyz answers 200, else 1 (for container health checks: no shell or curl needed)",
            ),
        );
    for (key, default) in resolved_keys(spec) {
        command = command.arg(
            Arg::new(key.name)
                .long(key.name.replace('_', "-"))
                .value_name("VALUE")
                // Values such as `-03:00` (a time zone) or `-4` (refused with a reason,
                // rather than taken for a flag) start with a dash.
                .allow_hyphen_values(true)
                // `echod healthcheck --admin-listen …` reads the same keys as the server.
                .global(true)
                // Given twice, the last one wins, as with most Unix tools.
                .overrides_with(key.name)
                .help(format!(
                    "{} [default: {}] [env: {}{}]",
                    key.help,
                    default,
                    ENV_PREFIX,
                    key.name.to_uppercase()
                )),
        );
    }
    command
}

/// Parses the command line and layers the configuration.
///
/// `args` includes the program name; `env` is the process environment (passed in so that
/// tests need not change the real one).
pub fn load(
    spec: &ServiceSpec,
    args: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Mode, Settings), LoadError> {
    let matches = command(spec)
        .try_get_matches_from(args)
        .map_err(LoadError::Cli)?;
    let keys = resolved_keys(spec);
    let known = || {
        keys.iter()
            .map(|(key, _)| key.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let is_known = |name: &str| keys.iter().any(|(key, _)| key.name == name);

    let mut builder = config::Config::builder();
    for (key, default) in &keys {
        builder = builder
            .set_default(key.name, default.as_str())
            .map_err(|e| ConfigError::invalid(key.name, e.to_string()))?;
    }

    let file = matches.get_one::<PathBuf>("config");
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: shown.clone(),
            reason: format!("{e}; check the path given to --config"),
        })?;
        // Parse once ourselves: the unknown-key check must name the file, and TOML
        // errors read better with toml's own line and column.
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: shown.clone(),
                reason: e.message().to_owned() + &line_of(&text, e.span()),
            })?;
        for name in table.keys() {
            if !is_known(name) {
                return Err(ConfigError::UnknownKey {
                    origin: format!("config file {shown}"),
                    key: name.clone(),
                    known: known(),
                }
                .into());
            }
        }
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }

    // Sorted, so that the first unknown variable reported does not depend on hash order.
    let env: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    for (variable, value) in &env {
        let name = variable[ENV_PREFIX.len()..].to_lowercase();
        if !is_known(&name) {
            return Err(ConfigError::UnknownKey {
                origin: format!("environment variable {variable}"),
                key: name,
                known: known(),
            }
            .into());
        }
        builder = builder
            .set_override(name.as_str(), value.as_str())
            .map_err(|e| ConfigError::invalid(&name, e.to_string()))?;
    }

    for (key, _) in &keys {
        if let Some(value) = matches.get_one::<String>(key.name) {
            builder = builder
                .set_override(key.name, value.as_str())
                .map_err(|e| ConfigError::invalid(key.name, e.to_string()))?;
        }
    }

    let values = builder.build().map_err(|e| ConfigError::File {
        path: file.map(|p| p.display().to_string()).unwrap_or_default(),
        reason: e.to_string(),
    })?;
    let mode = if matches.subcommand_matches("healthcheck").is_some() {
        Mode::Healthcheck
    } else if matches.get_flag("print-config") {
        Mode::PrintConfig
    } else {
        Mode::Serve
    };
    Ok((mode, Settings { values, keys }))
}

/// " at line N" for a TOML error span, or nothing.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => format!(
            " (line {})",
            text[..span.start.min(text.len())].matches('\n').count() + 1
        ),
        None => String::new(),
    }
}

impl Settings {
    /// Settings with every default of `spec` and nothing else, for tests and tools.
    pub fn defaults(spec: &ServiceSpec) -> Self {
        let args = [OsString::from(spec.binary)];
        match load(spec, args, std::iter::empty()) {
            Ok((_, settings)) => settings,
            // The defaults are compile-time constants; a failure is a bug in the key table.
            Err(error) => panic!("default settings of {} do not load: {error:?}", spec.binary),
        }
    }

    /// The raw value of `key` as text; a TOML array is joined with commas.
    pub fn text(&self, key: &str) -> Result<String, ConfigError> {
        if let Ok(items) = self.values.get_array(key) {
            let parts: Result<Vec<String>, _> =
                items.into_iter().map(|item| item.into_string()).collect();
            return parts
                .map(|parts| parts.join(","))
                .map_err(|e| ConfigError::invalid(key, e.to_string()));
        }
        self.values
            .get_string(key)
            .map_err(|e| ConfigError::invalid(key, format!("{e}; expected a single value")))
    }

    /// `key` parsed by `parse`, whose error says what would be accepted.
    pub fn parse<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let text = self.text(key)?;
        parse(text.trim()).map_err(|reason| {
            ConfigError::invalid(key, format!("invalid value `{text}`: {reason}"))
        })
    }

    /// A boolean: true/false, yes/no, on/off, 1/0.
    pub fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        self.parse(key, |text| match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    /// A whole number within `min..=max`.
    pub fn number(&self, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        self.parse(key, |text| {
            let value: u64 = text
                .parse()
                .map_err(|_| format!("expected a whole number from {min} to {max}"))?;
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(format!("expected a whole number from {min} to {max}"))
            }
        })
    }

    /// A duration with a unit (`500ms`, `10s`, `5m`), at least `min`.
    pub fn duration(&self, key: &str, min: Duration) -> Result<Duration, ConfigError> {
        self.parse(key, |text| {
            let value = humantime::parse_duration(text)
                .map_err(|e| format!("{e}; expected a duration such as 500ms, 10s or 5m"))?;
            if value < min {
                return Err(format!(
                    "must be at least {}",
                    humantime::format_duration(min)
                ));
            }
            Ok(value)
        })
    }

    /// A list of socket addresses; `off` (or nothing) is the empty list.
    pub fn addresses(&self, key: &str) -> Result<Vec<SocketAddr>, ConfigError> {
        self.parse(key, parse_addresses)
    }

    /// Every key with its effective value, as a TOML document that `--config` accepts.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (key, _) in &self.keys {
            let mut value = self.text(key.name).unwrap_or_default();
            // The effective configuration is shown to people and pasted into tickets: a
            // secret must not travel with it.
            if key.name == "admin_token" && !value.is_empty() {
                value = "<redacted>".to_owned();
            }
            out.push_str(&format!(
                "# {}\n{} = {}\n",
                key.help,
                key.name,
                toml::Value::String(value)
            ));
        }
        out
    }
}

/// Parses `IP:PORT[,IP:PORT…]`, or `off`/empty for none.
pub fn parse_addresses(text: &str) -> Result<Vec<SocketAddr>, String> {
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    let mut addresses = Vec::new();
    for part in text.split(',').map(str::trim) {
        let address: SocketAddr = part.parse().map_err(|_| {
            format!("`{part}` is not IP:PORT; write 127.0.0.1:7007 or [::1]:7007, or `off`")
        })?;
        if addresses.contains(&address) {
            return Err(format!("{address} is listed twice"));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The runtime's typed configuration, checked once at start.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// TCP listening addresses; empty when TCP is off.
    pub tcp_listen: Vec<SocketAddr>,
    /// UDP listening addresses; empty when UDP is off.
    pub udp_listen: Vec<SocketAddr>,
    /// Admin HTTP address; `None` when off.
    pub admin_listen: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter directive.
    pub log_level: String,
    /// Whether metrics are collected and served.
    pub metrics: bool,
    /// Whether each TCP connection gets a span.
    pub tracing: bool,
    /// How TCP connections are scheduled.
    pub tcp_concurrency: crate::concurrency::TcpConcurrency,
    /// How datagrams are scheduled.
    pub udp_concurrency: crate::concurrency::UdpConcurrency,
    /// Global TCP connection cap (and UDP datagrams in flight, when concurrent).
    pub max_connections: usize,
    /// Per-source-IP TCP connection cap.
    pub max_connections_per_source: usize,
    /// Longest wait for input on a TCP connection.
    pub idle_timeout: Duration,
    /// Longest wait for a write to make progress.
    pub write_timeout: Duration,
    /// Longest life of a TCP connection.
    pub max_connection_time: Duration,
    /// Half-close drain bound.
    pub close_linger: Duration,
    /// TCP read buffer per busy connection.
    pub buffer_size: usize,
    /// Whether the UDP loop guard is on.
    pub udp_loop_guard: bool,
    /// Replies per second per source; 0 = unlimited.
    pub udp_rate_per_source: u32,
    /// Burst per source.
    pub udp_burst_per_source: u32,
    /// Replies per second in all; 0 = unlimited.
    pub udp_rate_global: u32,
    /// Bound on the rate limiter's table.
    pub udp_limiter_sources: usize,
    /// Not-ready-but-serving period on SIGTERM.
    pub drain_delay: Duration,
    /// Bound on waiting for connections in flight.
    pub shutdown_timeout: Duration,
}

impl RuntimeConfig {
    /// Reads and checks every runtime key.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        const MS: Duration = Duration::from_millis(1);
        let admin = settings.addresses("admin_listen")?;
        if admin.len() > 1 {
            return Err(ConfigError::invalid(
                "admin_listen",
                "takes one address (or `off`)",
            ));
        }
        let tcp_listen = settings.addresses("tcp_listen")?;
        let udp_listen = settings.addresses("udp_listen")?;
        if tcp_listen.is_empty() && udp_listen.is_empty() {
            return Err(ConfigError::invalid(
                "tcp_listen",
                "both tcp_listen and udp_listen are off; enable at least one",
            ));
        }
        let log_format = settings.parse("log_format", |text| match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected `text` or `json`".to_owned()),
        })?;
        let log_level = settings.parse("log_level", |text| {
            // tracing-subscriber's directive parser panics on some non-ASCII input (found
            // by shared/tests/fuzz.rs): filters are ASCII, so refuse anything else first.
            if !text.is_ascii() {
                return Err("expected ASCII, e.g. `info` or `inetsvc_runtime=debug`".to_owned());
            }
            tracing_subscriber::EnvFilter::try_new(text)
                .map(|_| text.to_owned())
                .map_err(|e| format!("{e}; expected e.g. `info` or `inetsvc_runtime=debug`"))
        })?;
        Ok(RuntimeConfig {
            tcp_listen,
            udp_listen,
            admin_listen: admin.first().copied(),
            log_format,
            log_level,
            metrics: settings.flag("metrics")?,
            tracing: settings.flag("tracing")?,
            tcp_concurrency: settings
                .parse("tcp_concurrency", crate::concurrency::TcpConcurrency::parse)?,
            udp_concurrency: settings
                .parse("udp_concurrency", crate::concurrency::UdpConcurrency::parse)?,
            max_connections: settings.number("max_connections", 1, 1 << 20)? as usize,
            max_connections_per_source: settings.number("max_connections_per_source", 1, 1 << 20)?
                as usize,
            idle_timeout: settings.duration("idle_timeout", MS)?,
            write_timeout: settings.duration("write_timeout", MS)?,
            max_connection_time: settings.duration("max_connection_time", MS)?,
            close_linger: settings.duration("close_linger", Duration::ZERO)?,
            buffer_size: settings.number("buffer_size", 512, 1 << 24)? as usize,
            udp_loop_guard: settings.flag("udp_loop_guard")?,
            udp_rate_per_source: settings.number("udp_rate_per_source", 0, 10_000_000)? as u32,
            udp_burst_per_source: settings.number("udp_burst_per_source", 1, 10_000_000)? as u32,
            udp_rate_global: settings.number("udp_rate_global", 0, 100_000_000)? as u32,
            udp_limiter_sources: settings.number("udp_limiter_sources", 16, 1 << 24)? as usize,
            drain_delay: settings.duration("drain_delay", Duration::ZERO)?,
            shutdown_timeout: settings.duration("shutdown_timeout", Duration::ZERO)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ServiceSpec = ServiceSpec {
        name: "test",
        binary: "testd",
        about: "a test service",
        port: 7,
        admin_port: 9007,
        keys: &[Key {
            name: "flavour",
            default: "plain",
            help: "a service key",
        }],
    };

    fn load_with(args: &[&str], env: &[(&str, &str)]) -> Result<(Mode, Settings), LoadError> {
        let args = std::iter::once("testd")
            .chain(args.iter().copied())
            .map(OsString::from);
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load(&SPEC, args, env)
    }

    fn config_error(args: &[&str], env: &[(&str, &str)]) -> ConfigError {
        match load_with(args, env).and_then(|(_, s)| Ok(RuntimeConfig::from_settings(&s)?)) {
            Err(LoadError::Config(error)) => error,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("inetsvc-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temp file");
        path
    }

    #[test]
    fn defaults_use_the_standard_ports_dual_stack() {
        let config = RuntimeConfig::from_settings(&Settings::defaults(&SPEC)).unwrap();
        assert_eq!(config.tcp_listen, vec!["[::]:7".parse().unwrap()]);
        assert_eq!(config.udp_listen, vec!["[::]:7".parse().unwrap()]);
        assert_eq!(config.admin_listen, Some("[::]:9007".parse().unwrap()));
        assert!(config.metrics && config.tracing && config.udp_loop_guard);
    }

    #[test]
    fn flags_beat_environment_beats_file_beats_defaults() {
        let file = temp_file(
            "layers.toml",
            "max_connections = 10\nmax_connections_per_source = 5\nidle_timeout = \"7s\"\n",
        );
        let (_, settings) = load_with(
            &[
                "--config",
                file.to_str().unwrap(),
                "--max-connections",
                "30",
            ],
            &[
                ("INETSVC_MAX_CONNECTIONS", "20"),
                ("INETSVC_MAX_CONNECTIONS_PER_SOURCE", "6"),
            ],
        )
        .unwrap();
        let config = RuntimeConfig::from_settings(&settings).unwrap();
        assert_eq!(config.max_connections, 30);
        assert_eq!(config.max_connections_per_source, 6);
        assert_eq!(config.idle_timeout, Duration::from_secs(7));
        assert_eq!(config.write_timeout, Duration::from_secs(10));
    }

    #[test]
    fn listen_lists_accept_commas_arrays_and_off() {
        let file = temp_file(
            "lists.toml",
            "tcp_listen = [\"127.0.0.1:7007\", \"[::1]:7007\"]\nudp_listen = \"off\"\n",
        );
        let (_, settings) = load_with(&["--config", file.to_str().unwrap()], &[]).unwrap();
        let config = RuntimeConfig::from_settings(&settings).unwrap();
        assert_eq!(config.tcp_listen.len(), 2);
        assert!(config.udp_listen.is_empty());
        let (_, settings) = load_with(&["--udp-listen", "127.0.0.1:1, 127.0.0.2:1"], &[]).unwrap();
        assert_eq!(settings.addresses("udp_listen").unwrap().len(), 2);
    }

    #[test]
    fn unknown_file_key_is_named_with_its_file() {
        let file = temp_file("unknown.toml", "max_conections = 3\n");
        let error = config_error(&["--config", file.to_str().unwrap()], &[]);
        let text = error.to_string();
        assert!(text.contains("unknown key `max_conections`"), "{text}");
        assert!(text.contains("unknown.toml"), "{text}");
        assert!(text.contains("max_connections"), "{text}");
    }

    #[test]
    fn unknown_environment_variable_is_named() {
        let error = config_error(&[], &[("INETSVC_TCP_LISTN", "x")]);
        assert!(
            error
                .to_string()
                .starts_with("environment variable INETSVC_TCP_LISTN: unknown key `tcp_listn`"),
            "{error}"
        );
    }

    #[test]
    fn service_keys_are_known_in_every_layer() {
        let (_, settings) = load_with(&["--flavour", "odd"], &[]).unwrap();
        assert_eq!(settings.text("flavour").unwrap(), "odd");
        let (_, settings) = load_with(&[], &[("INETSVC_FLAVOUR", "env")]).unwrap();
        assert_eq!(settings.text("flavour").unwrap(), "env");
    }

    #[test]
    fn missing_file_is_named() {
        let error = config_error(&["--config", "/nonexistent/inetsvc.toml"], &[]);
        assert!(matches!(error, ConfigError::File { .. }));
        assert!(error.to_string().contains("/nonexistent/inetsvc.toml"));
    }

    #[test]
    fn malformed_toml_names_file_and_line() {
        let file = temp_file(
            "broken.toml",
            "log_format = \"json\"\nmax_connections = = 3\n",
        );
        let text = config_error(&["--config", file.to_str().unwrap()], &[]).to_string();
        assert!(
            text.contains("broken.toml") && text.contains("line 2"),
            "{text}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["--tcp-listen", "localhost:7"], "tcp_listen", "IP:PORT"),
            (
                &["--udp-listen", "1.2.3.4:1,1.2.3.4:1"],
                "udp_listen",
                "twice",
            ),
            (
                &["--admin-listen", "127.0.0.1:1,127.0.0.1:2"],
                "admin_listen",
                "one address",
            ),
            (
                &["--tcp-listen", "off", "--udp-listen", "off"],
                "tcp_listen",
                "enable at least one",
            ),
            (&["--log-format", "xml"], "log_format", "`text` or `json`"),
            (&["--log-level", "info,=[bad"], "log_level", "expected"),
            (&["--log-level", "X%\u{c6acc}=?"], "log_level", "ASCII"),
            (&["--metrics", "maybe"], "metrics", "true or false"),
            (&["--max-connections", "0"], "max_connections", "from 1 to"),
            (
                &["--max-connections", "-4"],
                "max_connections",
                "whole number",
            ),
            (&["--idle-timeout", "10"], "idle_timeout", "duration"),
            (&["--write-timeout", "0s"], "write_timeout", "at least"),
            (&["--buffer-size", "10"], "buffer_size", "from 512"),
        ];
        for (args, key, fix) in cases {
            let error = config_error(args, &[]);
            let text = error.to_string();
            assert!(text.starts_with(&format!("{key}: ")), "{args:?}: {text}");
            assert!(text.contains(fix), "{args:?}: {text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
    }

    #[test]
    fn file_values_of_the_wrong_type_are_named() {
        let file = temp_file("types.toml", "max_connections = \"lots\"\nmetrics = 3\n");
        let text = config_error(&["--config", file.to_str().unwrap()], &[]).to_string();
        assert!(
            text.starts_with("metrics: ") || text.starts_with("max_connections: "),
            "{text}"
        );
    }

    #[test]
    fn print_config_round_trips_through_the_file() {
        let (mode, settings) =
            load_with(&["--print-config", "--max-connections", "77"], &[]).unwrap();
        assert_eq!(mode, Mode::PrintConfig);
        let file = temp_file("printed.toml", &settings.to_toml());
        let (_, reread) = load_with(&["--config", file.to_str().unwrap()], &[]).unwrap();
        for (key, _) in resolved_keys(&SPEC) {
            assert_eq!(
                settings.text(key.name),
                reread.text(key.name),
                "{}",
                key.name
            );
        }
        let config = RuntimeConfig::from_settings(&reread).unwrap();
        assert_eq!(config.max_connections, 77);
    }

    #[test]
    fn usage_errors_and_help_come_from_clap() {
        match load_with(&["--no-such-flag"], &[]) {
            Err(LoadError::Cli(error)) => assert_eq!(error.exit_code(), 2),
            other => panic!("{other:?}"),
        }
        match load_with(&["--help"], &[]) {
            Err(LoadError::Cli(error)) => {
                assert_eq!(error.exit_code(), 0);
                let help = error.to_string();
                for (key, _) in resolved_keys(&SPEC) {
                    assert!(help.contains(&format!("--{}", key.name.replace('_', "-"))));
                    assert!(help.contains(&format!("INETSVC_{}", key.name.to_uppercase())));
                }
            }
            other => panic!("{other:?}"),
        }
    }
}
