//! The runtime's own options: the keys every service understands, checked once at start
//! into [`RuntimeConfig`], and the [`Schema`] that puts every key table of a service
//! together.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{ConfigError, Key, Schema, Settings};
use crate::service::ServiceSpec;

/// The settings every service understands.
pub const RUNTIME_KEYS: &[Key] = &[
    Key::new("tcp_listen", "[::]:{port}", "TCP addresses to serve, comma-separated IP:PORT; `off` disables TCP. [::] is dual-stack (IPv4 too)"),
    Key::new("udp_listen", "[::]:{port}", "UDP addresses to serve, comma-separated IP:PORT; `off` disables UDP"),
    Key::new("admin_listen", "[::]:{admin_port}", "Admin HTTP address (/metrics, /healthz, /readyz, /version); `off` disables it"),
    Key::new("log_format", "text", "Log format on stderr: `text` or `json`"),
    Key::new("log_level", "info", "Log filter, tracing EnvFilter syntax (`info`, `debug`, `inetsvc_runtime=debug`)").live(),
    Key::new("metrics", "true", "Collect Prometheus metrics; `false` gives the uninstrumented baseline"),
    Key::new("tracing", "true", "Open one span per TCP connection (and sampled datagram), exported over OTLP when an endpoint is set; `false` gives the uninstrumented baseline"),
    Key::new("tcp_concurrency", "concurrent", "Server design for TCP (book ch. 8-13): `iterative`, `concurrent` (a task per connection), `threaded` (a thread per connection) or `single-thread` (one readiness-driven thread)"),
    Key::new("udp_concurrency", "iterative", "Server design for UDP: `iterative` (answer each datagram in turn) or `concurrent` (a task per datagram)"),
    Key::new("max_connections", "4096", "Most TCP connections served at once; more are refused and counted").live(),
    Key::new("max_connections_per_source", "256", "Most TCP connections served at once from one source IP address").live(),
    Key::new("deny_sources", "none", "Source addresses refused (TCP reset, UDP dropped, counted as `denied`), comma-separated ADDRESS or ADDRESS/PREFIX, or `none`: an operator's block of an abusive client").live(),
    Key::new("idle_timeout", "60s", "Close a TCP connection after this long without receiving anything").live(),
    Key::new("write_timeout", "10s", "Close a TCP connection when a write makes no progress for this long").live(),
    Key::new("max_connection_time", "1h", "Close a TCP connection after this long, however busy").live(),
    Key::new("close_linger", "2s", "After the answer, half-close and discard input for at most this long before closing, so the client gets the answer and not a reset; 0s closes at once after dropping input already queued").live(),
    Key::new("buffer_size", "16384", "Bytes of TCP read buffer per busy connection (idle connections hold none)").live(),
    Key::new("udp_loop_guard", "true", "Drop datagrams from source ports below 1024, 2049 and this service's own ports, and from non-unicast sources (CERT CA-1996-01)").live(),
    Key::new("udp_loop_guard_ports", "7007,7013,7019,7037", "More source ports the loop guard drops, besides those below 1024, 2049 and this service's own: the service set's high ports (compose, Kubernetes), so that its services cannot be played against each other; `off` for none").live(),
    Key::new("udp_rate_per_source", "500", "UDP replies per second to one source IP address; 0 means unlimited").live(),
    Key::new("udp_burst_per_source", "1000", "UDP replies one source may get in a burst above its rate").live(),
    Key::new("udp_rate_global", "50000", "UDP replies per second in all; 0 means unlimited").live(),
    Key::new("udp_limiter_sources", "65536", "Most source addresses the UDP rate limiter tracks (bounds its memory)").live(),
    Key::new("drain_delay", "0s", "On SIGTERM, report not-ready and keep serving this long before refusing new work").live(),
    Key::new("shutdown_timeout", "30s", "After the drain delay, wait at most this long for connections in flight").live(),
];

/// The schema of a service binary: the runtime's keys, then telemetry's, the fault
/// catalogue's, the admin API's and the service's own, with the service's ports filled in.
pub fn schema(spec: &ServiceSpec) -> Schema {
    Schema {
        binary: spec.binary,
        about: spec.about,
        version: crate::run::VERSION,
        tables: vec![
            RUNTIME_KEYS,
            crate::telemetry::TRACE_KEYS,
            crate::fault::FAULT_KEYS,
            crate::admin::SERVER_KEYS,
            crate::admin::API_KEYS,
            spec.keys,
        ],
        placeholders: vec![
            ("{port}", spec.port.to_string()),
            ("{admin_port}", spec.admin_port.to_string()),
        ],
    }
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
    /// How TCP connections are served and bounded.
    pub tcp: TcpOptions,
    /// How datagrams are served and bounded.
    pub udp: UdpOptions,
    /// Sources refused on both transports.
    pub deny_sources: crate::limits::DenyList,
    /// Not-ready-but-serving period on SIGTERM.
    pub drain_delay: Duration,
    /// Bound on waiting for connections in flight.
    pub shutdown_timeout: Duration,
}

/// The TCP options, handed whole to the accept loop and to each connection: a new TCP
/// setting is a field here, its key above, and its use.
#[derive(Debug, Clone, Copy)]
pub struct TcpOptions {
    /// How TCP connections are scheduled.
    pub concurrency: crate::net::TcpConcurrency,
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
}

/// The UDP options, handed whole to the receive loop.
#[derive(Debug, Clone)]
pub struct UdpOptions {
    /// How datagrams are scheduled.
    pub concurrency: crate::net::UdpConcurrency,
    /// Whether the loop guard is on.
    pub loop_guard: bool,
    /// Source ports the loop guard drops besides the fixed ones and the service's own.
    pub loop_guard_ports: Vec<u16>,
    /// Replies per second per source; 0 = unlimited.
    pub rate_per_source: u32,
    /// Burst per source.
    pub burst_per_source: u32,
    /// Replies per second in all; 0 = unlimited.
    pub rate_global: u32,
    /// Bound on the rate limiter's table.
    pub limiter_sources: usize,
}

impl RuntimeConfig {
    /// Reads and checks every runtime key.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let admin = settings.addresses("admin_listen")?;
        if admin.len() > 1 {
            return Err(ConfigError::invalid(
                "admin_listen",
                "takes one address (or `off`)",
            ));
        }
        let tcp_listen = settings.addresses("tcp_listen")?;
        let udp_listen = settings.addresses("udp_listen")?;
        for (key, list) in [("tcp_listen", &tcp_listen), ("udp_listen", &udp_listen)] {
            if let Some((a, b)) = first_clash(list.iter().copied()) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{a} and {b} take the same port on the same addresses ({} covers the other); list one of them", wider(a, b)),
                ));
            }
        }
        if let Some(admin) = admin.first() {
            if let Some(data) = tcp_listen.iter().find(|&&data| clash(*admin, data)) {
                return Err(ConfigError::invalid(
                    "admin_listen",
                    format!("{admin} clashes with {data} in tcp_listen; the admin port must differ from the data ports"),
                ));
            }
        }
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
            tcp: TcpOptions::from_settings(settings)?,
            udp: UdpOptions::from_settings(settings)?,
            deny_sources: settings.parse("deny_sources", crate::limits::DenyList::parse)?,
            drain_delay: settings.duration("drain_delay", Duration::ZERO)?,
            shutdown_timeout: settings.duration("shutdown_timeout", Duration::ZERO)?,
        })
    }
}

impl TcpOptions {
    fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        const MS: Duration = Duration::from_millis(1);
        Ok(TcpOptions {
            concurrency: settings.parse("tcp_concurrency", crate::net::TcpConcurrency::parse)?,
            max_connections: settings.number("max_connections", 1, 1 << 20)? as usize,
            max_connections_per_source: settings.number("max_connections_per_source", 1, 1 << 20)?
                as usize,
            idle_timeout: settings.duration("idle_timeout", MS)?,
            write_timeout: settings.duration("write_timeout", MS)?,
            max_connection_time: settings.duration("max_connection_time", MS)?,
            close_linger: settings.duration("close_linger", Duration::ZERO)?,
            buffer_size: settings.number("buffer_size", 512, 1 << 24)? as usize,
        })
    }
}

/// Whether two listen addresses would take the same port on a common address: the same
/// address, or an unspecified one covering the other (`[::]` is made dual-stack, so it
/// covers IPv4 too; `0.0.0.0` covers IPv4). Bound together they fail with "address in
/// use", which would blame another server for a clash inside the configuration.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |x: SocketAddr, y: SocketAddr| x.ip().is_unspecified() && (x.is_ipv6() || y.is_ipv4());
    // Port 0 asks the kernel for a free port: two of them never clash.
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// The wider of two clashing addresses, for the message.
fn wider(a: SocketAddr, b: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        a
    } else {
        b
    }
}

/// The first pair of clashing addresses in a list, if any.
fn first_clash(list: impl Iterator<Item = SocketAddr> + Clone) -> Option<(SocketAddr, SocketAddr)> {
    let all: Vec<SocketAddr> = list.collect();
    all.iter()
        .enumerate()
        .find_map(|(i, &a)| all[i + 1..].iter().find(|&&b| clash(a, b)).map(|&b| (a, b)))
}

/// `P[,P…]` ports from 1 to 65535, or `off` for none.
fn parse_ports(text: &str) -> Result<Vec<u16>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(str::trim)
        .map(|part| match part.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!(
                "`{part}` is not a port from 1 to 65535; write 7007,7013 or `off`"
            )),
        })
        .collect()
}

impl UdpOptions {
    fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(UdpOptions {
            concurrency: settings.parse("udp_concurrency", crate::net::UdpConcurrency::parse)?,
            loop_guard: settings.flag("udp_loop_guard")?,
            loop_guard_ports: settings.parse("udp_loop_guard_ports", parse_ports)?,
            rate_per_source: settings.number("udp_rate_per_source", 0, 10_000_000)? as u32,
            burst_per_source: settings.number("udp_burst_per_source", 1, 10_000_000)? as u32,
            rate_global: settings.number("udp_rate_global", 0, 100_000_000)? as u32,
            limiter_sources: settings.number("udp_limiter_sources", 16, 1 << 24)? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadError, Mode};
    use std::ffi::OsString;
    use std::path::PathBuf;

    const SPEC: ServiceSpec = ServiceSpec {
        name: "test",
        binary: "testd",
        about: "a test service",
        port: 7,
        admin_port: 9007,
        keys: &[Key::new("flavour", "plain", "a service key")],
        max_datagram: 512,
        clock_wrap_unix: None,
        answers_on_connect: false,
    };

    fn load_with(args: &[&str], env: &[(&str, &str)]) -> Result<(Mode, Settings), LoadError> {
        let args = std::iter::once("testd")
            .chain(args.iter().copied())
            .map(OsString::from);
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        crate::config::load(&schema(&SPEC), args, env)
    }

    fn config_error(args: &[&str], env: &[(&str, &str)]) -> ConfigError {
        match load_with(args, env).and_then(|(_, s)| Ok(RuntimeConfig::from_settings(&s)?)) {
            Err(LoadError::Config(error)) => error,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn every_key() -> Vec<Key> {
        schema(&SPEC)
            .tables
            .iter()
            .flat_map(|table| table.iter().copied())
            .collect()
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("inetsvc-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temp file");
        path
    }

    #[test]
    fn defaults_use_the_standard_ports_dual_stack() {
        let config = RuntimeConfig::from_settings(&Settings::defaults(&schema(&SPEC))).unwrap();
        assert_eq!(config.tcp_listen, vec!["[::]:7".parse().unwrap()]);
        assert_eq!(config.udp_listen, vec!["[::]:7".parse().unwrap()]);
        assert_eq!(config.admin_listen, Some("[::]:9007".parse().unwrap()));
        assert!(config.metrics && config.tracing && config.udp.loop_guard);
    }

    #[test]
    fn addresses_that_do_not_share_an_address_do_not_clash() {
        let (_, settings) = load_with(
            &[
                "--tcp-listen",
                "127.0.0.1:7007,127.0.0.2:7007,[::1]:7007",
                "--admin-listen",
                "127.0.0.1:9007",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            RuntimeConfig::from_settings(&settings)
                .unwrap()
                .tcp_listen
                .len(),
            3
        );
        let (_, settings) = load_with(&["--tcp-listen", "0.0.0.0:7007,[::1]:7007"], &[]).unwrap();
        assert!(
            RuntimeConfig::from_settings(&settings).is_ok(),
            "0.0.0.0 covers no IPv6"
        );
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
        assert_eq!(config.tcp.max_connections, 30);
        assert_eq!(config.tcp.max_connections_per_source, 6);
        assert_eq!(config.tcp.idle_timeout, Duration::from_secs(7));
        assert_eq!(config.tcp.write_timeout, Duration::from_secs(10));
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
            (
                &["--tcp-listen", "[::]:7007,127.0.0.1:7007"],
                "tcp_listen",
                "[::]:7007 covers the other",
            ),
            (
                &["--udp-listen", "0.0.0.0:7,127.0.0.1:7"],
                "udp_listen",
                "list one of them",
            ),
            (
                &[
                    "--tcp-listen",
                    "127.0.0.1:7007",
                    "--admin-listen",
                    "[::]:7007",
                ],
                "admin_listen",
                "must differ from the data ports",
            ),
            (
                &["--udp-loop-guard-ports", "7007,0"],
                "udp_loop_guard_ports",
                "from 1 to 65535",
            ),
            (
                &["--tcp-listen", ""],
                "tcp_listen",
                "flag --tcp-listen is empty",
            ),
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
        for key in every_key() {
            assert_eq!(
                settings.text(key.name),
                reread.text(key.name),
                "{}",
                key.name
            );
        }
        let config = RuntimeConfig::from_settings(&reread).unwrap();
        assert_eq!(config.tcp.max_connections, 77);
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
                for key in every_key() {
                    assert!(help.contains(&format!("--{}", key.name.replace('_', "-"))));
                    assert!(help.contains(&format!("INETSVC_{}", key.name.to_uppercase())));
                }
            }
            other => panic!("{other:?}"),
        }
    }
}
