//! `inetsvc bench`: a load generator for ECHO, DAYTIME and TIME.
//!
//! Modes: closed-loop ECHO over TCP (N connections) and UDP (N flows), connection rate
//! for DAYTIME and TIME (connect, read the answer, close), and holding N idle connections.
//! Every run is bounded by a duration, a count, or both. Latencies go into an HdrHistogram;
//! with a fixed request rate they are measured from when each request was due, so a
//! stalled server shows up as latency instead of hiding (coordinated omission).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant, MissedTickBehavior};

use crate::target::Target;

/// What load to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// N TCP connections, each sending a payload and waiting for its echo, in a loop.
    EchoTcp,
    /// N UDP flows, each sending a datagram and waiting for its echo, in a loop.
    EchoUdp,
    /// N workers, each connecting, reading the whole answer and closing, in a loop
    /// (DAYTIME, TIME: connections per second).
    Connect,
    /// Open N connections and hold them idle until the end.
    Hold,
}

/// What a `connect` answer must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// TIME: exactly four bytes.
    Time,
    /// DAYTIME: a non-empty line ending in a newline.
    Daytime,
    /// Anything, even nothing.
    Any,
}

/// One benchmark run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The load.
    pub mode: Mode,
    /// The server.
    pub target: Target,
    /// Connections, flows or workers.
    pub connections: usize,
    /// ECHO payload size, bytes.
    pub size: usize,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many requests in all, if given.
    pub count: Option<u64>,
    /// Requests per second in all, if fixed; otherwise as fast as answers come.
    pub rate: Option<f64>,
    /// Bound on each wait (connect, answer).
    pub timeout: Duration,
    /// What `connect` answers must be.
    pub expect: Expect,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// The result of a run, as `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The load.
    pub mode: Mode,
    /// The server.
    pub target: String,
    /// Connections, flows or workers.
    pub connections: usize,
    /// ECHO payload size.
    pub payload_bytes: usize,
    /// How long the run took.
    pub duration_seconds: f64,
    /// Requests answered correctly.
    pub requests: u64,
    /// Requests answered correctly per second.
    pub throughput_per_second: f64,
    /// UDP requests that got no answer in time.
    pub lost: u64,
    /// `lost` as a fraction of UDP requests sent.
    pub loss_ratio: f64,
    /// Hold: connections still open at the end.
    pub held: u64,
    /// Failures by kind (connect, timeout, reset, io, mismatch, short).
    pub errors: BTreeMap<String, u64>,
    /// Latency of correct answers, microseconds.
    pub latency_us: Latency,
}

/// What one worker saw.
struct Tally {
    histogram: Histogram<u64>,
    requests: u64,
    lost: u64,
    held: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            // 1 µs to 10 min at 3 significant digits; the bounds are constants, so this
            // cannot fail.
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("valid histogram bounds"),
            requests: 0,
            lost: 0,
            held: 0,
            errors: BTreeMap::new(),
        }
    }

    fn ok(&mut self, since: Instant, done: &AtomicU64) {
        let micros = since.elapsed().as_micros().max(1) as u64;
        self.histogram.saturating_record(micros);
        self.requests += 1;
        done.fetch_add(1, Ordering::Relaxed);
    }

    fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.requests += other.requests;
        self.lost += other.lost;
        self.held += other.held;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

/// The kind of an I/O failure, for the report.
fn kind_of(error: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => "refused",
        ConnectionReset | ConnectionAborted | BrokenPipe => "reset",
        UnexpectedEof => "short",
        TimedOut | WouldBlock => "timeout",
        _ => "io",
    }
}

/// Shared between the workers: when to stop and how much is left.
struct Budget {
    /// Stop starting requests after this.
    deadline: Instant,
    /// Requests left to start (count-bounded runs); never below zero for long.
    tickets: AtomicI64,
    /// Requests answered, for the progress bar.
    done: AtomicU64,
}

impl Budget {
    /// Claims the right to start one more request.
    fn take(&self) -> bool {
        Instant::now() < self.deadline && self.tickets.fetch_sub(1, Ordering::Relaxed) > 0
    }
}

/// Paces a worker at a fixed rate, or not at all. Returns when the next request is due,
/// which is where its latency is measured from.
struct Pacer(Option<tokio::time::Interval>);

impl Pacer {
    fn new(per_worker_rate: Option<f64>) -> Self {
        Pacer(per_worker_rate.filter(|r| *r > 0.0).map(|rate| {
            let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
            interval
        }))
    }

    async fn next(&mut self) -> Instant {
        match &mut self.0 {
            Some(interval) => interval.tick().await,
            None => Instant::now(),
        }
    }
}

/// Runs `plan` and reports.
pub async fn run(plan: Plan) -> Result<Report, String> {
    if plan.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let address = plan.target.resolve()?[0];
    // 10,000 held connections need 10,000 descriptors here too.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let budget = Arc::new(Budget {
        deadline: Instant::now() + plan.duration,
        tickets: AtomicI64::new(
            plan.count
                .map_or(i64::MAX, |c| c.min(i64::MAX as u64) as i64),
        ),
        done: AtomicU64::new(0),
    });
    let payload: Arc<[u8]> = (0..plan.size).map(|i| (i % 251) as u8).collect();
    let per_worker_rate = plan.rate.map(|r| r / plan.connections as f64);
    let connecting = Arc::new(Semaphore::new(256));
    let started = Instant::now();
    let progress = plan
        .progress
        .then(|| progress_bar(&plan, Arc::clone(&budget)))
        .flatten();

    let mut workers = Vec::with_capacity(plan.connections);
    for flow in 0..plan.connections {
        let budget = Arc::clone(&budget);
        let payload = Arc::clone(&payload);
        let connecting = Arc::clone(&connecting);
        let plan = plan.clone();
        workers.push(tokio::spawn(async move {
            let pacer = Pacer::new(per_worker_rate);
            match plan.mode {
                Mode::EchoTcp => echo_tcp(address, &payload, &plan, &budget, pacer).await,
                Mode::EchoUdp => echo_udp(address, &payload, flow, &plan, &budget, pacer).await,
                Mode::Connect => connect(address, &plan, &budget, pacer).await,
                Mode::Hold => hold(address, &plan, &budget, &connecting).await,
            }
        }));
    }
    let mut total = Tally::new();
    for worker in workers {
        match worker.await {
            Ok(tally) => total.merge(tally),
            Err(_) => total.error("worker_panicked"),
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = &total.histogram;
    let sent_udp = total.requests + total.lost;
    Ok(Report {
        mode: plan.mode,
        target: plan.target.to_string(),
        connections: plan.connections,
        payload_bytes: plan.size,
        duration_seconds: elapsed,
        requests: total.requests,
        throughput_per_second: total.requests as f64 / elapsed.max(1e-9),
        lost: total.lost,
        loss_ratio: if sent_udp > 0 {
            total.lost as f64 / sent_udp as f64
        } else {
            0.0
        },
        held: total.held,
        errors: total.errors,
        latency_us: if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: h.mean(),
            }
        },
    })
}

/// A progress bar on stderr, only when stderr is a terminal.
fn progress_bar(plan: &Plan, budget: Arc<Budget>) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let seconds = plan.duration.as_secs().max(1);
    let bar = indicatif::ProgressBar::new(seconds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ticker = bar.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        while !ticker.is_finished() {
            ticker.set_position(started.elapsed().as_secs().min(seconds));
            ticker.set_message(format!("{} answered", budget.done.load(Ordering::Relaxed)));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Some(bar)
}

async fn open(address: SocketAddr, limit: Duration) -> Result<TcpStream, &'static str> {
    match timeout(limit, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(error)) => Err(match kind_of(&error) {
            "refused" => "refused",
            _ => "connect",
        }),
        Err(_) => Err("connect_timeout"),
    }
}

/// After a failed connect, wait a little so a refusing server is not hammered in a loop.
async fn pause_after_failure(budget: &Budget) {
    let pause = Duration::from_millis(50);
    if Instant::now() + pause < budget.deadline {
        tokio::time::sleep(pause).await;
    }
}

async fn echo_tcp(
    address: SocketAddr,
    payload: &[u8],
    plan: &Plan,
    budget: &Budget,
    mut pacer: Pacer,
) -> Tally {
    let mut tally = Tally::new();
    let mut back = vec![0u8; payload.len()];
    let mut stream = None;
    while budget.take() {
        let due = pacer.next().await;
        if stream.is_none() {
            match open(address, plan.timeout).await {
                Ok(s) => stream = Some(s),
                Err(kind) => {
                    tally.error(kind);
                    pause_after_failure(budget).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let exchange = async {
            s.write_all(payload).await?;
            s.read_exact(&mut back).await?;
            Ok::<_, std::io::Error>(())
        };
        match timeout(plan.timeout, exchange).await {
            Ok(Ok(())) if back == payload => tally.ok(due, &budget.done),
            Ok(Ok(())) => {
                tally.error("mismatch");
                stream = None;
            }
            Ok(Err(error)) => {
                tally.error(kind_of(&error));
                stream = None;
            }
            Err(_) => {
                tally.error("timeout");
                stream = None;
            }
        }
    }
    tally
}

async fn echo_udp(
    address: SocketAddr,
    payload: &[u8],
    flow: usize,
    plan: &Plan,
    budget: &Budget,
    mut pacer: Pacer,
) -> Tally {
    let mut tally = Tally::new();
    let local: SocketAddr = if address.is_ipv4() {
        "0.0.0.0:0".parse().expect("constant address")
    } else {
        "[::]:0".parse().expect("constant address")
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) if socket.connect(address).await.is_ok() => socket,
        _ => {
            tally.error("socket");
            return tally;
        }
    };
    // Each datagram carries its flow and sequence number, so a late answer to an earlier
    // (lost-by-timeout) request is never taken for the current one.
    let mut request = payload.to_vec();
    request.resize(payload.len().max(16), 0);
    request[..8].copy_from_slice(&(flow as u64).to_be_bytes());
    let mut back = vec![0u8; request.len() + 1];
    let mut sequence = 0u64;
    while budget.take() {
        let due = pacer.next().await;
        sequence += 1;
        request[8..16].copy_from_slice(&sequence.to_be_bytes());
        if let Err(error) = socket.send(&request).await {
            tally.error(kind_of(&error));
            continue;
        }
        let wait_deadline = Instant::now() + plan.timeout;
        loop {
            match tokio::time::timeout_at(wait_deadline, socket.recv(&mut back)).await {
                Ok(Ok(n)) if back[..n] == request[..] => {
                    tally.ok(due, &budget.done);
                    break;
                }
                // A stale answer to an earlier request: keep waiting for this one.
                Ok(Ok(n)) if n == request.len() && back[..8] == request[..8] => continue,
                Ok(Ok(_)) => {
                    tally.error("mismatch");
                    break;
                }
                Ok(Err(error)) => {
                    tally.error(kind_of(&error));
                    break;
                }
                Err(_) => {
                    tally.lost += 1;
                    break;
                }
            }
        }
    }
    tally
}

async fn connect(address: SocketAddr, plan: &Plan, budget: &Budget, mut pacer: Pacer) -> Tally {
    let mut tally = Tally::new();
    let mut answer = Vec::with_capacity(64);
    while budget.take() {
        let due = pacer.next().await;
        let mut stream = match open(address, plan.timeout).await {
            Ok(stream) => stream,
            Err(kind) => {
                tally.error(kind);
                pause_after_failure(budget).await;
                continue;
            }
        };
        answer.clear();
        match timeout(plan.timeout, stream.read_to_end(&mut answer)).await {
            Ok(Ok(_)) => {
                let good = match plan.expect {
                    Expect::Time => answer.len() == 4,
                    Expect::Daytime => answer.len() > 1 && answer.ends_with(b"\n"),
                    Expect::Any => true,
                };
                if good {
                    tally.ok(due, &budget.done);
                } else {
                    tally.error("short");
                }
            }
            Ok(Err(error)) => tally.error(kind_of(&error)),
            Err(_) => tally.error("timeout"),
        }
    }
    tally
}

async fn hold(address: SocketAddr, plan: &Plan, budget: &Budget, connecting: &Semaphore) -> Tally {
    let mut tally = Tally::new();
    let stream = {
        // Bound the connects in flight so that 10,000 of them do not overflow the
        // server's accept queue all at once.
        let _permit = connecting.acquire().await;
        let since = Instant::now();
        match open(address, plan.timeout).await {
            Ok(stream) => {
                tally.ok(since, &budget.done);
                stream
            }
            Err(kind) => {
                tally.error(kind);
                return tally;
            }
        }
    };
    tokio::time::sleep_until(budget.deadline).await;
    // Still open unless the server closed it (EOF or reset).
    let mut probe = [0u8; 1];
    match stream.try_read(&mut probe) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => tally.held += 1,
        Ok(_) => tally.error("closed_by_server"),
        Err(error) => tally.error(kind_of(&error)),
    }
    tally
}

/// A short human summary of a report.
pub fn summary(report: &Report) -> String {
    let l = &report.latency_us;
    let mut text = format!(
        "{:?} {}: {} connections, {:.1} s, {} answered, {:.0}/s\nlatency µs: p50 {} p90 {} p99 {} p99.9 {} max {}\n",
        report.mode,
        report.target,
        report.connections,
        report.duration_seconds,
        report.requests,
        report.throughput_per_second,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max
    );
    if report.mode == Mode::EchoUdp {
        text += &format!(
            "lost: {} ({:.3}%)\n",
            report.lost,
            report.loss_ratio * 100.0
        );
    }
    if report.mode == Mode::Hold {
        text += &format!("held: {}\n", report.held);
    }
    if !report.errors.is_empty() {
        text += &format!("errors: {:?}\n", report.errors);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge() {
        let done = AtomicU64::new(0);
        let mut a = Tally::new();
        let mut b = Tally::new();
        a.ok(Instant::now(), &done);
        b.ok(Instant::now(), &done);
        b.error("timeout");
        b.lost = 2;
        a.merge(b);
        assert_eq!(a.requests, 2);
        assert_eq!(a.lost, 2);
        assert_eq!(a.errors["timeout"], 1);
        assert_eq!(a.histogram.len(), 2);
        assert_eq!(done.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn budget_stops_at_the_count() {
        let budget = Budget {
            deadline: Instant::now() + Duration::from_secs(60),
            tickets: AtomicI64::new(3),
            done: AtomicU64::new(0),
        };
        assert_eq!((0..10).filter(|_| budget.take()).count(), 3);
    }
}
