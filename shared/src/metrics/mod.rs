//! The one metrics registry and the handles the hot paths use.
//!
//! Families and labels follow docs/architecture.md ("Metrics"): prefix `inetsvc_`, labels
//! `service` and `transport`, never a peer address. Every labelled handle is resolved once,
//! when a listener starts ([`Metrics::transport`]), and every label combination is created
//! at zero, so that `rate()` and absence-based alerts work from the first scrape. With
//! metrics off, [`Meter`] holds nothing and every call is a single branch: that is the
//! benchmark's uninstrumented baseline.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::limits::{DropReason, RejectReason};
use crate::options::{TcpOptions, UdpOptions};

mod labels;

pub use labels::{AdminRefusal, ErrorKind, Transport};

/// Connection duration buckets, seconds: from a sub-millisecond DAYTIME answer to an
/// hour-long ECHO session.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
];

/// Answer latency buckets, seconds: from the 0.1 ms a loopback answer takes to the 10 s
/// of a badly stalled one; the latency SLO's threshold (0.1 s) is a bound.
const ANSWER_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The build's source revision, when the build said (`INETSVC_REVISION`, set by
/// scripts/build-static from git); `unknown` otherwise.
pub const REVISION: &str = match option_env!("INETSVC_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// The registry and the metric families of one service.
#[derive(Clone)]
pub struct Metrics {
    /// Everything `/metrics` serves.
    registry: Registry,
    /// The `service` label value.
    service: &'static str,
    /// Whether the service answers a TCP connection with one write at accept (DAYTIME,
    /// TIME): only then is its TCP answer latency a series.
    answers_on_connect: bool,
    requests: IntCounterVec,
    active: IntGaugeVec,
    duration: HistogramVec,
    /// Accept (TCP) or receipt (UDP) to the answer handed to the kernel: what the
    /// service itself takes, without the client's pace or the close linger.
    answer: HistogramVec,
    /// The limits in force, by limit, so that dashboards and alerts can compare with them.
    limits: GaugeVec,
    /// Sources the UDP rate limiter tracks now (its bound is a limit above).
    limiter_sources: IntGaugeVec,
    bytes_received: IntCounterVec,
    bytes_sent: IntCounterVec,
    rejected: IntCounterVec,
    dropped: IntCounterVec,
    errors: IntCounterVec,
    /// The connection cap in force, so that dashboards and alerts can show "near the cap".
    connections_max: IntGaugeVec,
    /// Spans the OTLP collector accepted.
    spans_exported: IntCounterVec,
    /// Spans dropped, by reason (`queue_full`, `export_failed`).
    spans_dropped: IntCounterVec,
    /// 1 while a fault is injected, by fault.
    fault_active: IntGaugeVec,
    /// What `/healthz` and `/readyz` answer now, 1 = healthy, by check.
    health: IntGaugeVec,
    /// Admin connections and requests turned away, by reason.
    admin_refused: IntCounterVec,
    /// The configuration in force: its generation (1 at start, +1 per applied reload),
    /// whether the last reload succeeded, and when it was tried.
    config_generation: IntGaugeVec,
    config_reload_success: IntGaugeVec,
    config_reload_time: IntGaugeVec,
}

/// Registers `collector` in `registry`. Names are compile-time constants registered once,
/// so a failure is a programming error caught by every test that starts a service.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric families are registered once, with unique names");
    collector
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Creates the families for `service` and registers the process collector and
    /// `inetsvc_build_info`. `answers_on_connect`: the service's TCP answer is one write at
    /// accept, whose latency is measured.
    pub fn new(service: &'static str, version: &str, answers_on_connect: bool) -> Self {
        let registry = Registry::new();
        let labels = &["service", "transport"];
        let counter = |name: &str, help: &str, extra: Option<&str>| {
            let mut names: Vec<&str> = labels.to_vec();
            names.extend(extra);
            register(
                &registry,
                IntCounterVec::new(opts(name, help), &names).expect("valid metric definition"),
            )
        };
        let requests = counter(
            "inetsvc_requests_total",
            "Requests served: TCP connections accepted for service, or datagrams accepted for an answer.",
            None,
        );
        let bytes_received = counter(
            "inetsvc_bytes_received_total",
            "Payload bytes received from clients.",
            None,
        );
        let bytes_sent = counter(
            "inetsvc_bytes_sent_total",
            "Payload bytes sent to clients.",
            None,
        );
        let rejected = counter(
            "inetsvc_connections_rejected_total",
            "TCP connections refused by a connection cap, by reason.",
            Some("reason"),
        );
        let dropped = counter(
            "inetsvc_datagrams_dropped_total",
            "Datagrams dropped unanswered by the loop guard or a rate limit, by reason.",
            Some("reason"),
        );
        let errors = counter(
            "inetsvc_errors_total",
            "I/O errors and timeouts, by kind.",
            Some("kind"),
        );
        let active = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "inetsvc_connections_active",
                    "TCP connections being served now.",
                ),
                labels,
            )
            .expect("valid metric definition"),
        );
        let duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "inetsvc_connection_duration_seconds",
                    "Time from accept to close of TCP connections, the client's own pace and the close linger included.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric definition"),
        );
        let answer = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "inetsvc_answer_duration_seconds",
                    "Time from accept (TCP, DAYTIME and TIME) or receipt (UDP) to the answer handed to the kernel.",
                )
                .buckets(ANSWER_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric definition"),
        );
        let limits = register(
            &registry,
            GaugeVec::new(
                opts(
                    "inetsvc_config_limit",
                    "A limit in force, by limit (seconds, bytes, connections, datagrams per second; 0 = unlimited).",
                ),
                &["service", "limit"],
            )
            .expect("valid metric definition"),
        );
        let limiter_sources = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "inetsvc_udp_rate_limiter_sources",
                    "Sources the UDP rate limiter tracks now; at its bound (limit=\"udp_limiter_sources\"), refilled ones are forgotten first.",
                ),
                &["service"],
            )
            .expect("valid metric definition"),
        );
        limiter_sources.with_label_values(&[service]).set(0);
        let connections_max = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "inetsvc_connections_max",
                    "TCP connection cap in force (max_connections, lowered to fit the open-file limit).",
                ),
                labels,
            )
            .expect("valid metric definition"),
        );
        let spans_exported = register(
            &registry,
            IntCounterVec::new(
                opts(
                    "inetsvc_trace_spans_exported_total",
                    "Trace spans accepted by the OTLP collector.",
                ),
                &["service"],
            )
            .expect("valid metric definition"),
        );
        let spans_dropped = register(
            &registry,
            IntCounterVec::new(
                opts(
                    "inetsvc_trace_spans_dropped_total",
                    "Trace spans dropped: export queue full, or export failed.",
                ),
                &["service", "reason"],
            )
            .expect("valid metric definition"),
        );
        let fault_active = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "inetsvc_fault_active",
                    "1 while a fault is injected on purpose (training), by fault; see docs/faults.md.",
                ),
                &["service", "fault"],
            )
            .expect("valid metric definition"),
        );
        let health = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "inetsvc_health",
                    "What the health endpoints answer: check=\"liveness\" (/healthz), check=\"readiness\" (/readyz); 1 = passing.",
                ),
                &["service", "check"],
            )
            .expect("valid metric definition"),
        );
        let admin_refused = register(
            &registry,
            IntCounterVec::new(
                opts(
                    "inetsvc_admin_refused_total",
                    "Admin HTTP connections or requests turned away, by reason.",
                ),
                &["service", "reason"],
            )
            .expect("valid metric definition"),
        );
        for reason in AdminRefusal::ALL {
            admin_refused
                .with_label_values(&[service, reason.label()])
                .reset();
        }
        let gauge = |name: &str, help: &str| {
            let family = register(
                &registry,
                IntGaugeVec::new(opts(name, help), &["service"]).expect("valid metric definition"),
            );
            family.with_label_values(&[service]).set(0);
            family
        };
        let config_generation = gauge(
            "inetsvc_config_generation",
            "The configuration in force: 1 at start, one more for every reload applied.",
        );
        let config_reload_success = gauge(
            "inetsvc_config_last_reload_success",
            "1 if the last reload (or the start) applied, 0 if it was refused and the old configuration stays.",
        );
        let config_reload_time = gauge(
            "inetsvc_config_last_reload_timestamp_seconds",
            "When the last reload (or the start) was tried, Unix seconds.",
        );
        let build_info = register(
            &registry,
            IntGaugeVec::new(
                opts("inetsvc_build_info", "Always 1; labels tell the build."),
                &["service", "version", "revision"],
            )
            .expect("valid metric definition"),
        );
        build_info
            .with_label_values(&[service, version, REVISION])
            .set(1);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector is registered once");
        Metrics {
            registry,
            service,
            answers_on_connect,
            requests,
            active,
            duration,
            answer,
            limits,
            limiter_sources,
            bytes_received,
            bytes_sent,
            rejected,
            dropped,
            errors,
            connections_max,
            spans_exported,
            spans_dropped,
            fault_active,
            health,
            admin_refused,
            config_generation,
            config_reload_success,
            config_reload_time,
        }
    }

    /// Publishes the outcome of a reload (or of the start).
    pub fn set_reload(&self, generation: u64, success: bool, at_unix: u64) {
        let one =
            |family: &IntGaugeVec, value: i64| family.with_label_values(&[self.service]).set(value);
        one(&self.config_generation, generation as i64);
        one(&self.config_reload_success, i64::from(success));
        one(&self.config_reload_time, at_unix as i64);
    }

    /// Counts an admin connection or request turned away.
    pub fn admin_refused(&self, reason: AdminRefusal) {
        self.admin_refused
            .with_label_values(&[self.service, reason.label()])
            .inc();
    }

    /// The `inetsvc_fault_active` family and this service's label, for [`crate::fault::Faults`].
    pub fn fault_gauge(&self) -> (IntGaugeVec, &'static str) {
        (self.fault_active.clone(), self.service)
    }

    /// Publishes what the health endpoints answer now.
    pub fn set_health(&self, live: bool, ready: bool) {
        for (check, passing) in [("liveness", live), ("readiness", ready)] {
            self.health
                .with_label_values(&[self.service, check])
                .set(i64::from(passing));
        }
    }

    /// Publishes the limits in force (at start and after every reload): the TCP cap
    /// (`inetsvc_connections_max`, fitted to the open-file limit) and the others.
    pub fn set_limits(&self, tcp: &TcpOptions, udp: &UdpOptions) {
        self.connections_max
            .with_label_values(&[self.service, Transport::Tcp.label()])
            .set(tcp.max_connections as i64);
        for (limit, value) in [
            (
                "max_connections_per_source",
                tcp.max_connections_per_source as f64,
            ),
            ("idle_timeout_seconds", tcp.idle_timeout.as_secs_f64()),
            ("write_timeout_seconds", tcp.write_timeout.as_secs_f64()),
            (
                "max_connection_time_seconds",
                tcp.max_connection_time.as_secs_f64(),
            ),
            ("close_linger_seconds", tcp.close_linger.as_secs_f64()),
            ("buffer_size_bytes", tcp.buffer_size as f64),
            ("udp_rate_per_source", f64::from(udp.rate_per_source)),
            ("udp_burst_per_source", f64::from(udp.burst_per_source)),
            ("udp_rate_global", f64::from(udp.rate_global)),
            ("udp_limiter_sources", udp.limiter_sources as f64),
        ] {
            self.limits
                .with_label_values(&[self.service, limit])
                .set(value);
        }
    }

    /// Counters for the trace exporter, created at zero.
    pub fn span_counters(&self) -> crate::telemetry::SpanCounters {
        crate::telemetry::SpanCounters {
            exported: Some(self.spans_exported.with_label_values(&[self.service])),
            dropped_queue_full: Some(
                self.spans_dropped
                    .with_label_values(&[self.service, "queue_full"]),
            ),
            dropped_export_failed: Some(
                self.spans_dropped
                    .with_label_values(&[self.service, "export_failed"]),
            ),
        }
    }

    /// Resolves every handle one listener of `transport` needs, creating at zero exactly
    /// the series that can move on it: drops and answer latency on UDP, rejections,
    /// connections and their duration on TCP, each error kind on its own transport.
    pub fn transport(&self, transport: Transport) -> Meter {
        let labels = [self.service, transport.label()];
        let tcp = transport == Transport::Tcp;
        let with = |vec: &IntCounterVec, extra: &str| {
            vec.with_label_values(&[self.service, transport.label(), extra])
        };
        let rejected =
            tcp.then(|| RejectReason::ALL.map(|reason| with(&self.rejected, reason.label())));
        let dropped =
            (!tcp).then(|| DropReason::ALL.map(|reason| with(&self.dropped, reason.label())));
        let errors = ErrorKind::ALL
            .map(|kind| (kind.transport() == transport).then(|| with(&self.errors, kind.label())));
        Meter(Some(Arc::new(TransportMetrics {
            requests: self.requests.with_label_values(&labels),
            active: tcp.then(|| self.active.with_label_values(&labels)),
            duration: tcp.then(|| self.duration.with_label_values(&labels)),
            answer: (!tcp || self.answers_on_connect)
                .then(|| self.answer.with_label_values(&labels)),
            limiter_sources: (!tcp)
                .then(|| self.limiter_sources.with_label_values(&[self.service])),
            bytes_received: self.bytes_received.with_label_values(&labels),
            bytes_sent: self.bytes_sent.with_label_values(&labels),
            rejected,
            dropped,
            errors,
        })))
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Pre-resolved handles of one service and transport; `None` where the series cannot
/// move on this transport (and so is not exported).
#[derive(Debug)]
struct TransportMetrics {
    requests: IntCounter,
    active: Option<IntGauge>,
    duration: Option<prometheus::Histogram>,
    answer: Option<prometheus::Histogram>,
    limiter_sources: Option<IntGauge>,
    bytes_received: IntCounter,
    bytes_sent: IntCounter,
    /// Indexed like [`RejectReason::ALL`] (TCP).
    rejected: Option<[IntCounter; 4]>,
    /// Indexed like [`DropReason::ALL`] (UDP).
    dropped: Option<[IntCounter; 6]>,
    /// Indexed like [`ErrorKind::ALL`].
    errors: [Option<IntCounter>; 9],
}

/// The hot path's view of the metrics: cheap to clone, a no-op when metrics are off.
#[derive(Debug, Clone, Default)]
pub struct Meter(Option<Arc<TransportMetrics>>);

impl Meter {
    /// A meter that records nothing (metrics off).
    pub fn off() -> Self {
        Meter(None)
    }

    /// One request served.
    #[inline]
    pub fn request(&self) {
        if let Some(m) = &self.0 {
            m.requests.inc();
        }
    }

    /// `bytes` received from a client.
    #[inline]
    pub fn received(&self, bytes: usize) {
        if let Some(m) = &self.0 {
            m.bytes_received.inc_by(bytes as u64);
        }
    }

    /// `bytes` sent to a client.
    #[inline]
    pub fn sent(&self, bytes: usize) {
        if let Some(m) = &self.0 {
            m.bytes_sent.inc_by(bytes as u64);
        }
    }

    /// A connection refused.
    pub fn rejected(&self, reason: RejectReason) {
        if let Some(rejected) = self.0.as_ref().and_then(|m| m.rejected.as_ref()) {
            rejected[reason as usize].inc();
        }
    }

    /// A datagram dropped.
    pub fn dropped(&self, reason: DropReason) {
        if let Some(dropped) = self.0.as_ref().and_then(|m| m.dropped.as_ref()) {
            dropped[reason as usize].inc();
        }
    }

    /// An error or timeout.
    pub fn error(&self, kind: ErrorKind) {
        if let Some(counter) = self
            .0
            .as_ref()
            .and_then(|m| m.errors[kind as usize].as_ref())
        {
            counter.inc();
        }
    }

    /// A connection starts being served.
    pub fn connection_opened(&self) {
        if let Some(active) = self.0.as_ref().and_then(|m| m.active.as_ref()) {
            active.inc();
        }
    }

    /// A connection served for `duration` has closed.
    pub fn connection_closed(&self, duration: Duration) {
        if let Some(m) = &self.0 {
            if let (Some(active), Some(histogram)) = (&m.active, &m.duration) {
                active.dec();
                histogram.observe(duration.as_secs_f64());
            }
        }
    }

    /// The UDP rate limiter tracks `sources` now.
    #[inline]
    pub fn limiter_sources(&self, sources: usize) {
        if let Some(gauge) = self.0.as_ref().and_then(|m| m.limiter_sources.as_ref()) {
            gauge.set(sources as i64);
        }
    }

    /// An answer handed to the kernel `latency` after its accept or receipt.
    #[inline]
    pub fn answered(&self, latency: Duration) {
        if let Some(histogram) = self.0.as_ref().and_then(|m| m.answer.as_ref()) {
            histogram.observe(latency.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_that_can_move_is_exposed_at_zero_and_no_other() {
        let metrics = Metrics::new("time", "1.2.3", true);
        let tcp = metrics.transport(Transport::Tcp);
        let _udp = metrics.transport(Transport::Udp);
        tcp.request();
        tcp.received(5);
        tcp.rejected(RejectReason::PerSourceCap);
        let text = metrics.render();
        for needle in [
            "inetsvc_requests_total{service=\"time\",transport=\"tcp\"} 1",
            "inetsvc_requests_total{service=\"time\",transport=\"udp\"} 0",
            "inetsvc_bytes_received_total{service=\"time\",transport=\"tcp\"} 5",
            "inetsvc_bytes_sent_total{service=\"time\",transport=\"udp\"} 0",
            "inetsvc_connections_rejected_total{reason=\"per_source_cap\",service=\"time\",transport=\"tcp\"} 1",
            "inetsvc_datagrams_dropped_total{reason=\"loop_port\",service=\"time\",transport=\"udp\"} 0",
            "inetsvc_errors_total{kind=\"accept\",service=\"time\",transport=\"tcp\"} 0",
            "inetsvc_errors_total{kind=\"send\",service=\"time\",transport=\"udp\"} 0",
            "inetsvc_connections_active{service=\"time\",transport=\"tcp\"} 0",
            "inetsvc_connection_duration_seconds_bucket{service=\"time\",transport=\"tcp\",le=\"0.001\"} 0",
            "inetsvc_answer_duration_seconds_bucket{service=\"time\",transport=\"tcp\",le=\"0.0001\"} 0",
            "inetsvc_answer_duration_seconds_bucket{service=\"time\",transport=\"udp\",le=\"0.0001\"} 0",
            "inetsvc_udp_rate_limiter_sources{service=\"time\"} 0",
            "inetsvc_build_info{revision=\"",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // Series that could never move are not there to mislead a dashboard.
        for absent in [
            "inetsvc_datagrams_dropped_total{reason=\"loop_port\",service=\"time\",transport=\"tcp\"}",
            "inetsvc_connections_rejected_total{reason=\"global_cap\",service=\"time\",transport=\"udp\"}",
            "inetsvc_connections_active{service=\"time\",transport=\"udp\"}",
            "inetsvc_connection_duration_seconds_count{service=\"time\",transport=\"udp\"}",
            "inetsvc_errors_total{kind=\"send\",service=\"time\",transport=\"tcp\"}",
            "inetsvc_errors_total{kind=\"idle_timeout\",service=\"time\",transport=\"udp\"}",
        ] {
            assert!(!text.contains(absent), "{absent} is exported");
        }
        // ECHO answers no TCP connection in one write: no TCP answer latency.
        let echo = Metrics::new("echo", "1.2.3", false);
        let _ = (
            echo.transport(Transport::Tcp),
            echo.transport(Transport::Udp),
        );
        let text = echo.render();
        assert!(!text
            .contains("inetsvc_answer_duration_seconds_count{service=\"echo\",transport=\"tcp\"}"));
        assert!(text.contains(
            "inetsvc_answer_duration_seconds_count{service=\"echo\",transport=\"udp\"} 0"
        ));
    }

    #[test]
    fn limits_in_force_are_published() {
        let metrics = Metrics::new("echo", "0", false);
        let spec = crate::testing::TEST_SPEC;
        let config =
            crate::options::RuntimeConfig::from_settings(&crate::testing::default_settings(&spec))
                .unwrap();
        metrics.set_limits(&config.tcp, &config.udp);
        let text = metrics.render();
        for needle in [
            format!(
                "inetsvc_connections_max{{service=\"echo\",transport=\"tcp\"}} {}",
                config.tcp.max_connections
            ),
            "inetsvc_config_limit{limit=\"idle_timeout_seconds\",service=\"echo\"} 60".to_owned(),
            "inetsvc_config_limit{limit=\"max_connections_per_source\",service=\"echo\"} 256"
                .to_owned(),
            format!(
                "inetsvc_config_limit{{limit=\"udp_rate_per_source\",service=\"echo\"}} {}",
                config.udp.rate_per_source
            ),
        ] {
            assert!(text.contains(&needle), "missing {needle} in\n{text}");
        }
    }

    /// Every call the hot paths make, once.
    fn touch_everything(meter: &Meter) {
        meter.request();
        meter.received(3);
        meter.sent(4);
        meter.rejected(RejectReason::GlobalCap);
        meter.dropped(DropReason::SourceRate);
        meter.error(ErrorKind::Write);
        meter.connection_opened();
        meter.connection_closed(Duration::from_millis(1));
        meter.answered(Duration::from_micros(300));
        meter.limiter_sources(2);
    }

    /// The service's own series (the process collector's change by themselves).
    fn own_series(metrics: &Metrics) -> Vec<String> {
        let text = metrics.render();
        text.lines()
            .filter(|line| line.starts_with("inetsvc_"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_off_meter_records_into_no_registry_while_an_on_meter_counts() {
        let metrics = Metrics::new("echo", "0", true);
        let _udp = metrics.transport(Transport::Udp);
        let zeroed = own_series(&metrics);
        let off = Meter::off();
        touch_everything(&off);
        touch_everything(&Meter::default());
        assert_eq!(
            own_series(&metrics),
            zeroed,
            "nothing reached the service's registry"
        );
        assert!(
            !prometheus::gather()
                .iter()
                .any(|family| family.name().starts_with("inetsvc_")),
            "nothing reached the process-wide default registry either"
        );
        let on = metrics.transport(Transport::Tcp);
        touch_everything(&on);
        let text = metrics.render();
        for needle in [
            "inetsvc_requests_total{service=\"echo\",transport=\"tcp\"} 1",
            "inetsvc_bytes_sent_total{service=\"echo\",transport=\"tcp\"} 4",
            "inetsvc_errors_total{kind=\"write\",service=\"echo\",transport=\"tcp\"} 1",
            "inetsvc_connection_duration_seconds_count{service=\"echo\",transport=\"tcp\"} 1",
            "inetsvc_answer_duration_seconds_count{service=\"echo\",transport=\"tcp\"} 1",
        ] {
            assert!(
                text.contains(needle),
                "the same calls on an on meter count: {needle}"
            );
        }
    }
}
