//! `inetsvc`: ECHO, DAYTIME and TIME clients, a prober and a load generator.
//!
//! Exit codes: 0 success, 1 a network or protocol failure (with a one-line reason on
//! stderr), 2 a usage error.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use inetsvc_cli::bench::{self, Expect, Mode};
use inetsvc_cli::client::{self, ClientError, Options, Reply, Transport};
use inetsvc_cli::probe;
use inetsvc_cli::target::{Service, Target};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "inetsvc",
    version,
    about = "Clients, prober and load generator for ECHO, DAYTIME and TIME"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a message to an ECHO server (RFC 862) and check it comes back unchanged.
    Echo {
        #[command(flatten)]
        exchange: ExchangeArgs,
        /// What to send.
        #[arg(long, default_value = "hello from inetsvc\n")]
        message: String,
        /// Send this many pattern bytes instead of --message.
        #[arg(long)]
        size: Option<usize>,
    },
    /// Ask a DAYTIME server (RFC 867) for the date and time.
    Daytime {
        #[command(flatten)]
        exchange: ExchangeArgs,
    },
    /// Ask a TIME server (RFC 868) for the time and show its offset from the local clock.
    Time {
        #[command(flatten)]
        exchange: ExchangeArgs,
    },
    /// Check every service over TCP and UDP: answers, latency and clock skew.
    Probe(ProbeArgs),
    /// Generate load and report throughput and latency percentiles.
    Bench(BenchArgs),
    /// Set, clear or list injected faults through a service's admin API (training).
    Fault(FaultArgs),
    /// Read and change a service's live settings, reload it, read its audit trail.
    Admin(AdminArgs),
    /// Timed, graded training exercises against the real alerts (docs/training/).
    Gameday(inetsvc_cli::gameday::command::GamedayArgs),
    /// Exit 0 if URL answers 200, else 1: the prober container's health check (the image
    /// has no shell or curl).
    Healthcheck {
        /// What to ask.
        #[arg(default_value = "http://127.0.0.1:9100/healthz")]
        url: String,
    },
}

/// Where a service's admin API is and how to authenticate: shared by `fault` and `admin`.
#[derive(Args)]
struct AdminTarget {
    /// The service's admin address: HOST:PORT, a URL, or echo|daytime|time for its
    /// address in INETSVC_ECHO_ADMIN (…_DAYTIME_…, …_TIME_…), else its default admin port
    /// on 127.0.0.1.
    #[arg(long, short = 'a', default_value = "echo", global = true)]
    admin: String,
    /// File holding the bearer token, the trainer's or the trainee's (default: the
    /// INETSVC_ADMIN_TOKEN variable).
    #[arg(long, global = true)]
    token_file: Option<std::path::PathBuf>,
    /// Print the service's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
struct FaultArgs {
    #[command(flatten)]
    target: AdminTarget,
    #[command(subcommand)]
    action: FaultAction,
}

#[derive(Args)]
struct AdminArgs {
    #[command(flatten)]
    target: AdminTarget,
    #[command(subcommand)]
    action: AdminAction,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Every live setting's value in force, and those set through the API.
    Settings,
    /// Set a live setting now, above the configuration (until `unset`).
    Set {
        /// A live key (see `settings`).
        key: String,
        /// Its new value.
        value: String,
    },
    /// Drop the value set through the API: the configuration's applies again.
    Unset {
        /// The key.
        key: String,
    },
    /// Read the configuration again (as SIGHUP does).
    Reload,
    /// The changes made through the admin plane, oldest first.
    Audit {
        /// Only those after this number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

#[derive(Subcommand)]
enum FaultAction {
    /// Set (or replace) a fault: `inetsvc fault set latency delay=200ms jitter=50ms --for 10m`.
    Set {
        /// The fault (see `inetsvc fault list --all`).
        fault: String,
        /// PARAM=VALUE settings; unnamed ones take their defaults.
        params: Vec<String>,
        /// Clear it by itself after this long (e.g. 10m).
        #[arg(long = "for")]
        lasts: Option<String>,
    },
    /// Clear one fault, or every fault with --all.
    Clear {
        /// The fault to clear.
        #[arg(required_unless_present = "all")]
        fault: Option<String>,
        /// Clear every fault.
        #[arg(long, conflicts_with = "fault")]
        all: bool,
    },
    /// Show the faults set now (and with --all every fault there is).
    List {
        /// Also describe every fault and its parameters.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args)]
struct ExchangeArgs {
    /// The server: HOST, HOST:PORT, HOST:SERVICE or [IPV6]:PORT (default port: the service's).
    target: String,
    /// Use UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How long to wait to connect and for each answer.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// UDP: how many times to send again after a timeout.
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProbeFormat {
    Table,
    Json,
    Prometheus,
}

#[derive(Clone, Copy, ValueEnum)]
enum Transports {
    Tcp,
    Udp,
    Both,
}

#[derive(Args)]
struct ProbeArgs {
    /// Host for every service not given its own address.
    #[arg(default_value = "127.0.0.1")]
    host: String,
    /// ECHO server: HOST[:PORT], or just a PORT on HOST.
    #[arg(long)]
    echo: Option<String>,
    /// DAYTIME server: HOST[:PORT], or just a PORT on HOST.
    #[arg(long)]
    daytime: Option<String>,
    /// TIME server: HOST[:PORT], or just a PORT on HOST.
    #[arg(long)]
    time: Option<String>,
    /// Check only these services (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_service)]
    only: Vec<Service>,
    /// Transports to check.
    #[arg(long, value_enum, default_value = "both")]
    transport: Transports,
    /// Largest DAYTIME/TIME clock skew that passes.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    tolerance: Duration,
    /// How long to wait for each answer.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// UDP: sends again after a timeout.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Longest the whole probe may take (checks run at once); a check without a result by
    /// then fails as `timeout`. As an exporter, keep it below the scrape timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    budget: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ProbeFormat,
    /// Serve the results on this address as a Prometheus exporter instead (one probe per
    /// scrape of /metrics), e.g. [::]:9100.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct BenchArgs {
    /// The server: HOST[:PORT].
    target: String,
    /// The load.
    #[arg(long, value_enum, default_value = "echo-tcp")]
    mode: Mode,
    /// Connections (echo-tcp, connect, hold) or flows (echo-udp).
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// ECHO payload size, bytes.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Stop after this long (every run is bounded).
    #[arg(long, short = 'd', default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many requests in all.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Fixed request rate in all, per second (default: as fast as answers come).
    #[arg(long)]
    rate: Option<f64>,
    /// Bound on each connect and each answer.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// connect mode: what an answer must be.
    #[arg(long, value_enum, default_value = "any")]
    expect: Expect,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_service(text: &str) -> Result<Service, String> {
    Service::ALL
        .into_iter()
        .find(|s| s.name() == text)
        .ok_or_else(|| format!("`{text}` is not echo, daytime or time"))
}

/// A usage error: exit code 2, like clap's own.
fn usage(reason: String) -> ExitCode {
    eprintln!("inetsvc: {reason}");
    ExitCode::from(2)
}

/// A network or protocol failure: exit code 1.
fn failure(json_output: bool, service: &str, error: &ClientError) -> ExitCode {
    if json_output {
        println!(
            "{}",
            json!({"service": service, "ok": false, "error": error.to_string()})
        );
    }
    eprintln!("inetsvc {service}: {error}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Echo {
            exchange,
            message,
            size,
        } => {
            let payload: Vec<u8> = match size {
                Some(n) => (0..n).map(|i| (i % 251) as u8).collect(),
                None => message.into_bytes(),
            };
            run_exchange(&exchange, Service::Echo, |target, transport, options| {
                client::echo(target, transport, &payload, options).map(|reply| {
                    let text = format!(
                        "{} bytes echoed by {} over {} in {:.2} ms",
                        reply.bytes.len(),
                        reply.peer,
                        transport.name(),
                        ms(&reply)
                    );
                    (text, json!({"bytes": reply.bytes.len()}), reply)
                })
            })
        }
        Command::Daytime { exchange } => {
            run_exchange(&exchange, Service::Daytime, |target, transport, options| {
                client::daytime(target, transport, options)
                    .map(|(line, reply)| (line.clone(), json!({"daytime": line}), reply))
            })
        }
        Command::Time { exchange } => {
            run_exchange(&exchange, Service::Time, |target, transport, options| {
                client::time(target, transport, options).map(|(time, reply)| {
                    let offset = client::clock_offset(time, &reply);
                    let shown = DateTime::<Utc>::from(time).to_rfc3339();
                    let text = format!(
                        "{shown} (offset {offset:+.1} s from the local clock, ±0.5 s; round trip {:.2} ms)",
                        ms(&reply)
                    );
                    let unix = time
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    (text, json!({"time": shown, "unix": unix, "offset_seconds": offset}), reply)
                })
            })
        }
        Command::Probe(args) => run_probe(args),
        Command::Bench(args) => run_bench(args),
        Command::Fault(args) => run_fault(args),
        Command::Admin(args) => run_admin(args),
        Command::Gameday(args) => inetsvc_cli::gameday::command::run(args),
        Command::Healthcheck { url } => {
            let answer = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .and_then(|client| client.get(&url).send());
            match answer {
                Ok(response) if response.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
                Ok(response) => {
                    eprintln!("inetsvc healthcheck: {url} answered {}", response.status());
                    ExitCode::from(1)
                }
                Err(error) => {
                    eprintln!("inetsvc healthcheck: {url}: {error}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn ms(reply: &Reply) -> f64 {
    reply.rtt.as_secs_f64() * 1000.0
}

/// One exchange with a service: parse the target, run `exchange`, print text or JSON.
fn run_exchange(
    args: &ExchangeArgs,
    service: Service,
    exchange: impl FnOnce(
        &Target,
        Transport,
        &Options,
    ) -> Result<(String, serde_json::Value, Reply), ClientError>,
) -> ExitCode {
    let target = match Target::parse(&args.target, service.port()) {
        Ok(target) => target,
        Err(reason) => return usage(reason),
    };
    let transport = if args.udp {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let options = Options {
        timeout: args.timeout,
        retries: args.retries,
    };
    match exchange(&target, transport, &options) {
        Ok((text, mut fields, reply)) => {
            if args.json {
                fields["service"] = json!(service.name());
                fields["transport"] = json!(transport.name());
                fields["target"] = json!(target.to_string());
                fields["peer"] = json!(reply.peer.to_string());
                fields["rtt_seconds"] = json!(reply.rtt.as_secs_f64());
                fields["ok"] = json!(true);
                println!("{fields}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => failure(args.json, service.name(), &error),
    }
}

fn run_probe(args: ProbeArgs) -> ExitCode {
    let services = if args.only.is_empty() {
        Service::ALL.to_vec()
    } else {
        args.only.clone()
    };
    let mut targets = Vec::new();
    for service in services {
        let given = match service {
            Service::Echo => &args.echo,
            Service::Daytime => &args.daytime,
            Service::Time => &args.time,
        };
        let text = match given {
            Some(port) if port.parse::<u16>().is_ok() => format!("{}:{port}", bracket(&args.host)),
            Some(address) => address.clone(),
            None => bracket(&args.host),
        };
        match Target::parse(&text, service.port()) {
            Ok(target) => targets.push((service, target)),
            Err(reason) => return usage(format!("--{}: {reason}", service.name())),
        }
    }
    let transports = match args.transport {
        Transports::Tcp => vec![Transport::Tcp],
        Transports::Udp => vec![Transport::Udp],
        Transports::Both => vec![Transport::Tcp, Transport::Udp],
    };
    let plan = probe::Plan {
        targets,
        transports,
        tolerance: args.tolerance,
        options: Options {
            timeout: args.timeout,
            retries: args.retries,
        },
        budget: args.budget,
    };
    // Refused, not clamped: a budget shorter than one check's own timeouts would fail
    // checks that are merely slow to time out.
    if plan.worst_check() > plan.budget {
        return usage(format!(
            "--budget {:?} is shorter than one check can take by --timeout {:?} and --retries {} ({:?})",
            plan.budget,
            plan.options.timeout,
            plan.options.retries,
            plan.worst_check()
        ));
    }
    if let Some(listen) = args.listen {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(error) => return usage(format!("cannot start the runtime: {error}")),
        };
        return match runtime.block_on(inetsvc_cli::exporter::serve(listen, plan)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => usage(format!("--listen {listen}: {error}")),
        };
    }
    let checks = probe::run(&plan);
    let output = match args.format {
        ProbeFormat::Table => probe::table(&checks),
        ProbeFormat::Json => probe::json(&checks) + "\n",
        ProbeFormat::Prometheus => probe::prometheus(&checks),
    };
    print!("{output}");
    if probe::all_ok(&checks) {
        ExitCode::SUCCESS
    } else {
        for check in checks.iter().filter(|c| !c.ok) {
            eprintln!(
                "inetsvc probe: {} over {} at {}: {}",
                check.service.name(),
                check.transport.name(),
                check.target,
                check.error.as_deref().unwrap_or("failed")
            );
        }
        ExitCode::from(1)
    }
}

/// The admin API client of `admin` with the token from `token_file` or the environment.
fn admin_client(
    admin: &str,
    token_file: Option<&std::path::Path>,
) -> Result<inetsvc_cli::fault::AdminClient, String> {
    use inetsvc_cli::fault::{self, AdminClient};
    let token = match token_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(|error| format!("--token-file {}: {error}", path.display()))?,
        None => std::env::var("INETSVC_ADMIN_TOKEN").unwrap_or_default(),
    };
    AdminClient::new(fault::base_url(admin), token, Duration::from_secs(5))
        .map_err(|e| e.to_string())
}

/// Prints an admin answer (text or JSON) or the error, with the exit code it calls for.
fn admin_outcome(
    command: &str,
    json_output: bool,
    outcome: Result<(serde_json::Value, String), inetsvc_cli::fault::FaultError>,
) -> ExitCode {
    use inetsvc_cli::fault::FaultError;
    match outcome {
        Ok((answer, text)) => {
            if json_output {
                println!("{answer}");
            } else {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(FaultError::Invalid(reason)) => usage(reason),
        Err(error) => {
            eprintln!("inetsvc {command}: {error}");
            ExitCode::from(1)
        }
    }
}

fn run_admin(args: AdminArgs) -> ExitCode {
    let client = match admin_client(&args.target.admin, args.target.token_file.as_deref()) {
        Ok(client) => client,
        Err(reason) => return usage(reason),
    };
    let settings_text = |answer: &serde_json::Value| {
        let mut text = String::new();
        let overrides = &answer["overrides"];
        for (key, value) in answer["settings"].as_object().into_iter().flatten() {
            let mark = if overrides.get(key).is_some() {
                "  (set through the API)"
            } else {
                ""
            };
            text.push_str(&format!(
                "{key:<28} {}{mark}\n",
                value.as_str().unwrap_or("")
            ));
        }
        text
    };
    let outcome = match &args.action {
        AdminAction::Settings => client.settings().map(|a| {
            let text = settings_text(&a);
            (a, text)
        }),
        AdminAction::Set { key, value } => client.set_setting(key, value).map(|a| {
            let text = format!("{key} = {value} (generation {})\n", a["generation"]);
            (a, text)
        }),
        AdminAction::Unset { key } => client.unset_setting(key).map(|a| {
            let value = a["settings"][key].as_str().unwrap_or("").to_owned();
            (a, format!("{key} = {value} (from the configuration)\n"))
        }),
        AdminAction::Reload => client.reload().map(|a| {
            let text = format!(
                "reloaded: generation {}, applied {}\n",
                a["generation"], a["applied"]
            );
            (a, text)
        }),
        AdminAction::Audit { since } => client.audit(*since).map(|a| {
            let mut text = String::new();
            for entry in a["entries"].as_array().into_iter().flatten() {
                let time = entry["time"].as_f64().unwrap_or(0.0);
                let shown = DateTime::<Utc>::from(
                    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(time.max(0.0)),
                );
                text.push_str(&format!(
                    "{:>4} {} {:<8} {:<22} {:<10} {:<16} {} → {}\n",
                    entry["seq"].as_u64().unwrap_or(0),
                    shown.format("%Y-%m-%dT%H:%M:%SZ"),
                    entry["role"].as_str().unwrap_or(""),
                    entry["origin"].as_str().unwrap_or(""),
                    entry["actor"].as_str().unwrap_or(""),
                    entry["action"].as_str().unwrap_or(""),
                    entry["subject"].as_str().unwrap_or(""),
                    entry["outcome"].as_str().unwrap_or("")
                ));
            }
            (a, text)
        }),
    };
    admin_outcome("admin", args.target.json, outcome)
}

fn run_fault(args: FaultArgs) -> ExitCode {
    use inetsvc_cli::fault;
    let client = match admin_client(&args.target.admin, args.target.token_file.as_deref()) {
        Ok(client) => client,
        Err(reason) => return usage(reason),
    };
    let outcome = match &args.action {
        FaultAction::Set {
            fault: name,
            params,
            lasts,
        } => {
            let body = fault::params_body(params, lasts.as_deref());
            client.set(name, &body).map(|answer| {
                let set = &answer["set"];
                let text = format!(
                    "set {} {}{}\n",
                    set["fault"].as_str().unwrap_or(name),
                    set["params"].as_str().unwrap_or(""),
                    set["expires_in_seconds"]
                        .as_f64()
                        .map(|s| format!(" for {s:.0}s"))
                        .unwrap_or_default()
                );
                (answer, text)
            })
        }
        FaultAction::Clear { fault: name, all } => {
            let which = if *all { None } else { name.as_deref() };
            client.clear(which).map(|answer| {
                let text = match which {
                    Some(name) if answer["cleared"].as_array().is_some_and(|a| a.is_empty()) => {
                        format!("{name} was not set\n")
                    }
                    Some(name) => format!("cleared {name}\n"),
                    None => format!("cleared {} fault(s)\n", answer["cleared_count"]),
                };
                (answer, text)
            })
        }
        FaultAction::List { all } => client.list().map(|answer| {
            let mut text = fault::active_table(&answer);
            if *all {
                text.push('\n');
                text.push_str(&fault::available_table(&answer));
            }
            (answer, text)
        }),
    };
    admin_outcome("fault", args.target.json, outcome)
}

/// An IPv6 host in brackets, so that a port can follow it.
fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn run_bench(args: BenchArgs) -> ExitCode {
    let target = match Target::parse(&args.target, Service::Echo.port()) {
        Ok(target) => target,
        Err(reason) => return usage(reason),
    };
    let plan = bench::Plan {
        mode: args.mode,
        target,
        connections: args.connections,
        size: args.size,
        duration: args.duration,
        count: args.count,
        rate: args.rate,
        timeout: args.timeout,
        expect: args.expect,
        progress: !args.json,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("inetsvc bench: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(bench::run(plan)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("inetsvc bench: {error}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", bench::summary(&report));
            }
            if report.requests == 0 && report.held == 0 {
                eprintln!("inetsvc bench: no request was answered");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("inetsvc bench: {reason}");
            ExitCode::from(1)
        }
    }
}
