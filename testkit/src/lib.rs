//! Test helpers shared by the service crates' integration tests: start a service binary
//! on loopback ports chosen by the kernel, learn its addresses from its startup log line,
//! read its admin endpoints, signal it, and run real peers (`socat`, `rdate`, `promtool`).
//!
//! Every process a test starts is stopped by its PID when the [`Server`] is dropped; no
//! test ever stops anything by name.

pub mod otlp;
pub mod prometheus;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a service may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A service process started for one test.
pub struct Server {
    /// The process.
    child: Child,
    /// Bound TCP addresses, from the startup line.
    pub tcp: Vec<SocketAddr>,
    /// Bound UDP addresses.
    pub udp: Vec<SocketAddr>,
    /// Admin HTTP address.
    pub admin: Option<SocketAddr>,
    /// Every stderr line so far, for assertions on logs.
    log: Arc<Mutex<Vec<String>>>,
}

/// Flags serving TCP and UDP on `listen` (one port for both transports, as a real
/// deployment has), admin on a kernel-chosen port, with JSON debug logs.
fn loopback_args(listen: &str) -> Vec<&str> {
    vec![
        "--tcp-listen",
        listen,
        "--udp-listen",
        listen,
        "--admin-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--log-level",
        "debug",
    ]
}

fn parse_list(text: &str) -> Vec<SocketAddr> {
    text.split_whitespace()
        .map(|a| a.parse().expect("address in startup line"))
        .collect()
}

impl Server {
    /// Starts `binary` (a `CARGO_BIN_EXE_…` path) serving TCP and UDP on one free port of
    /// 127.0.0.1, admin on a kernel-chosen port, with JSON logs; `args` come after and may
    /// override any of that.
    pub fn start(binary: &str, args: &[&str]) -> Server {
        Server::start_under(&[], binary, args)
    }

    /// Like [`Server::start`], with these environment variables (the rest is cleared).
    pub fn start_with_env(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut full = loopback_args(&listen);
        full.extend_from_slice(args);
        Server::spawn(binary, &full, env)
    }

    /// Like [`Server::start`], run through `wrapper` (a program that execs its arguments,
    /// such as `prlimit --nofile=100:100`), so the PID is still the service's.
    pub fn start_under(wrapper: &[&str], binary: &str, args: &[&str]) -> Server {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut full: Vec<&str> = wrapper.iter().skip(1).copied().collect();
        full.push(binary);
        full.extend(loopback_args(&listen));
        full.extend_from_slice(args);
        match wrapper.first() {
            Some(program) => Server::start_exact(program, &full),
            None => Server::start_exact(binary, &full[1..]),
        }
    }

    /// Starts `binary` with exactly `args` (which must select JSON logs) and waits for its
    /// `serving` line.
    pub fn start_exact(binary: &str, args: &[&str]) -> Server {
        Server::spawn(binary, args, &[])
    }

    fn spawn(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(binary)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Logged before announced, so that the log holds the line once start returns.
                sink.lock().unwrap().push(line.clone());
                if line.contains("\"message\":\"serving\"") {
                    let _ = ready_tx.send(line);
                }
            }
        });
        let line = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{binary} did not start serving; its log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let fields: serde_json::Value = serde_json::from_str(&line).expect("JSON startup line");
        let field = |name: &str| fields[name].as_str().unwrap_or_default().to_owned();
        Server {
            child,
            tcp: parse_list(&field("tcp")),
            udp: parse_list(&field("udp")),
            admin: parse_list(&field("admin")).first().copied(),
            log,
        }
    }

    /// The first TCP address.
    pub fn tcp(&self) -> SocketAddr {
        self.tcp[0]
    }

    /// The first UDP address.
    pub fn udp(&self) -> SocketAddr {
        self.udp[0]
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET path` on the admin port: status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.admin.expect("admin port"), path)
    }

    /// The value of the sample `series` (name with labels, exactly as exposed), or 0 when
    /// absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        sample(&body, series).unwrap_or(0.0)
    }

    /// Waits until `series` reaches at least `value`, or panics after `timeout`.
    pub fn wait_metric(&self, series: &str, value: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.metric(series);
            if now >= value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {now}, expected at least {value}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`TERM`, `INT`) to this process, by PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only this test's own process, by PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `series` in a Prometheus text exposition.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// One TCP exchange with an ECHO-like server: sends `data` from a second thread (so a
/// large payload cannot deadlock against the echo), half-closes, and returns everything
/// read back until the server closes.
pub fn round_trip(address: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let data = data.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).expect("send");
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read back");
    sender.join().expect("sender");
    back
}

/// Whether `word` sent on an open ECHO connection comes back unchanged within 5 s.
pub fn echoes_on(stream: &mut TcpStream, word: &[u8]) -> bool {
    let mut back = vec![0u8; word.len()];
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .is_ok()
        && stream.write_all(word).is_ok()
        && stream.read_exact(&mut back).is_ok()
        && back == word
}

/// A minimal HTTP/1.0 GET: status code and body.
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let response = http_request(
        address,
        &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    );
    parse_response(&response)
}

/// Status code and body of an HTTP response.
fn parse_response(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sends one raw HTTP/1.0 request (head and body as written) and returns the whole
/// response, status line first.
pub fn http_request(address: SocketAddr, request: &str) -> String {
    try_http_request(address, request).unwrap_or_else(|e| panic!("{address}: {e}"))
}

fn try_http_request(address: SocketAddr, request: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// [`http_get`] for a server that may not be listening yet: `None` when it cannot be
/// reached.
pub fn try_http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let response = try_http_request(
        address,
        &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    )
    .ok()?;
    Some(parse_response(&response))
}

/// Runs a real peer program, feeding `input`, bounded by `timeout`; panics with a clear
/// message if the tool is not installed (the test command installs it; a test never
/// skips silently).
pub fn run_tool(program: &str, args: &[&str], input: &[u8], timeout: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is needed for this test ({e}); the README test command installs it")
        });
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || read_all(stdout));
    let err = std::thread::spawn(move || read_all(stderr));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn read_all(mut reader: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = reader.read_to_end(&mut bytes);
    bytes
}

/// Connects to `target` from the local address `source` (e.g. 127.0.0.2, to look like
/// another client).
pub fn connect_from(source: SocketAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&source.into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// Runs `binary` with `args` and an empty environment plus `env`, and returns its output.
pub fn run_binary(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"))
}

/// Checks an exposition with Debian's `promtool check metrics`; returns its complaints.
pub fn promtool_check_metrics(exposition: &str) -> Result<(), String> {
    let output = run_tool(
        "promtool",
        &["check", "metrics"],
        exposition.as_bytes(),
        Duration::from_secs(30),
    );
    let complaints = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(())
    } else {
        Err(complaints)
    }
}

/// A port that was free a moment ago on 127.0.0.1 for both TCP and UDP (the kernel
/// chose it for TCP; a UDP bind on it is checked too).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().expect("local address").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Debian's xinetd serving its internal ECHO, DAYTIME and TIME (TCP and UDP) on
/// 127.0.0.1, on free ports: the comparison server. Stopped by PID when dropped.
pub struct Xinetd {
    child: Child,
    /// Its ECHO port.
    pub echo: u16,
    /// Its DAYTIME port.
    pub daytime: u16,
    /// Its TIME port.
    pub time: u16,
    /// The folder holding its configuration.
    dir: std::path::PathBuf,
}

impl Xinetd {
    /// Writes a configuration and starts `xinetd -dontfork`; waits until every TCP port
    /// accepts.
    pub fn start() -> Xinetd {
        let (echo, daytime, time) = (free_port(), free_port(), free_port());
        let dir =
            std::env::temp_dir().join(format!("inetsvc-xinetd-{}-{echo}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("xinetd folder");
        let config = xinetd_config(echo, daytime, time);
        let path = dir.join("xinetd.conf");
        std::fs::write(&path, config).expect("xinetd.conf");
        let child = Command::new("xinetd")
            .args(["-dontfork", "-stayalive", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("xinetd is needed for this test ({e}); the README test command installs it")
            });
        let xinetd = Xinetd {
            child,
            echo,
            daytime,
            time,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for port in [echo, daytime, time] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "xinetd did not open port {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        xinetd
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Xinetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An xinetd configuration with the internal ECHO, DAYTIME and TIME services, TCP and UDP,
/// on 127.0.0.1 only, with its connection limits lifted (it is the peer to beat, not to
/// throttle).
pub fn xinetd_config(echo: u16, daytime: u16, time: u16) -> String {
    let mut config = String::from(
        "defaults\n{\n    instances = UNLIMITED\n    per_source = UNLIMITED\n    cps = 1000000 1\n}\n",
    );
    for (name, port) in [("echo", echo), ("daytime", daytime), ("time", time)] {
        for (kind, protocol, wait) in [("stream", "tcp", "no"), ("dgram", "udp", "yes")] {
            config += &format!(
                "service {name}\n{{\n    type = INTERNAL UNLISTED\n    id = {name}-{kind}\n    socket_type = {kind}\n    protocol = {protocol}\n    port = {port}\n    bind = 127.0.0.1\n    user = root\n    wait = {wait}\n}}\n"
            );
        }
    }
    config
}

/// The bearer token test services are started with for their `/admin/` API.
pub const ADMIN_TOKEN: &str = "test-token-0123456789abcdef";

impl Server {
    /// Like [`Server::start`], with the `/admin/` API on and [`ADMIN_TOKEN`] as its token.
    pub fn start_training(binary: &str, args: &[&str]) -> Server {
        let mut full = vec!["--admin-api", "true"];
        full.extend_from_slice(args);
        Server::start_with_env(binary, &full, &[("INETSVC_ADMIN_TOKEN", ADMIN_TOKEN)])
    }

    /// Runs `inetsvc fault ARGS…` (the `inetsvc` binary at `cli`) against this service's
    /// admin port with [`ADMIN_TOKEN`], and panics unless it succeeds.
    pub fn fault(&self, cli: &str, args: &[&str]) -> String {
        let admin = self.admin.expect("admin port").to_string();
        let mut full = vec!["fault", "--admin", admin.as_str()];
        full.extend_from_slice(args);
        let output = run_binary(cli, &full, &[("INETSVC_ADMIN_TOKEN", ADMIN_TOKEN)]);
        assert!(
            output.status.success(),
            "inetsvc {}: {}",
            full.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether `inetsvc_fault_active{fault}` is 1.
    pub fn fault_active(&self, fault: &str) -> bool {
        let service = self
            .log()
            .iter()
            .find_map(|line| {
                let fields: serde_json::Value = serde_json::from_str(line).ok()?;
                (fields["message"] == "serving")
                    .then(|| fields["service"].as_str().map(str::to_owned))?
            })
            .expect("the serving line names the service");
        self.metric(&format!(
            "inetsvc_fault_active{{fault=\"{fault}\",service=\"{service}\"}}"
        )) == 1.0
    }
}

/// The path of binary `name` (`echod`, `inetsvc`…) from this workspace's build: the test
/// binaries run from `target/<profile>/deps/`, the workspace's binaries sit one up.
pub fn workspace_binary(name: &str) -> String {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = profile.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`; the README test command does)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat"))
}

/// CPU seconds from the text of a `/proc/…/stat` file (read through a file opened
/// beforehand where no descriptor could be opened later).
pub fn cpu_seconds_in(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// Sends `request` from `client` to `target` and returns the first answer from `target`
/// within `wait`, or `None`.
pub fn udp_ask(
    client: &UdpSocket,
    target: SocketAddr,
    request: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    client.send_to(request, target).expect("send");
    let mut answer = None;
    receive_until(client, Instant::now() + wait, |data, from| {
        if from == target {
            answer = Some(data.to_vec());
        }
        answer.is_some()
    });
    answer
}

/// Sends `request` to `server` from a fresh loopback socket and collects every answer
/// that arrives within `wait`, each with how long after the request it came (for faults
/// that duplicate, delay or reorder answers).
pub fn udp_answers(server: SocketAddr, request: &[u8], wait: Duration) -> Vec<(Vec<u8>, Duration)> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(server).expect("connect");
    let since = Instant::now();
    socket.send(request).expect("send");
    udp_collect(&socket, since, wait)
}

/// Every datagram a connected `socket` receives until `since + wait`, each with how long
/// after `since` it came.
pub fn udp_collect(socket: &UdpSocket, since: Instant, wait: Duration) -> Vec<(Vec<u8>, Duration)> {
    let mut answers = Vec::new();
    receive_until(socket, since + wait, |data, _| {
        answers.push((data.to_vec(), since.elapsed()));
        false
    });
    answers
}

/// Receives on `socket` until `deadline`, a receive error, or `take` returning true.
fn receive_until(
    socket: &UdpSocket,
    deadline: Instant,
    mut take: impl FnMut(&[u8], SocketAddr) -> bool,
) {
    let mut buf = vec![0u8; 70_000];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if take(&buf[..n], from) => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Everything a server sends on `stream` until it closes, waiting at most 10 s for each
/// read: an error is a reset or a stall, not a clean close.
pub fn read_to_close(mut stream: TcpStream) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}
