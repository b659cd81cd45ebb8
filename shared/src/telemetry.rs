//! OpenTelemetry traces over OTLP (gRPC or HTTP/protobuf), off the serving path.
//!
//! Configured by the config keys below or by the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`); a config
//! key, when set, wins. Whether a connection or datagram is traced is decided before any
//! span is built ([`Sampler`]), so an unsampled request costs one random number.
//!
//! A collector that is down, refusing or black-holing never slows serving: spans go into
//! a bounded queue drained by the batch processor; when the queue is full, spans are
//! dropped and counted (`inetsvc_trace_spans_dropped_total{reason="queue_full"}`), failed
//! exports are counted (`reason="export_failed"`) and logged at most once every
//! [`ERROR_LOG_INTERVAL`], and shutdown waits at most [`SHUTDOWN_BOUND`] for the flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

use crate::config::{ConfigError, Key, Settings};

/// Bound on flushing spans at shutdown: a dead collector must not hold the exit.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(3);

/// Export errors are logged at most this often.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The tracing keys every service understands.
pub const TRACE_KEYS: &[Key] = &[
    Key::new("otlp_endpoint", "", "OTLP collector base URL (http://collector:4318 for HTTP, which adds /v1/traces; http://collector:4317 for gRPC); empty: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL), else OTEL_EXPORTER_OTLP_ENDPOINT (a base), else no export"),
    Key::new("otlp_protocol", "", "`grpc` or `http/protobuf`; empty: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf"),
    Key::new("otlp_timeout", "5s", "Longest wait for one export; a black-holed collector costs at most this per batch"),
    Key::new("otlp_queue_size", "2048", "Spans waiting for export at most; more are dropped and counted"),
    Key::new("trace_sample_ratio", "", "Share of TCP connections traced, 0 to 1; empty: OTEL_TRACES_SAMPLER(_ARG), else 1").live(),
    Key::new("udp_trace_sample_ratio", "0", "Share of UDP datagrams traced, 0 to 1 (off by default: a span per datagram costs more than the answer)").live(),
];

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC, usually port 4317.
    Grpc,
    /// OTLP/HTTP with protobuf bodies, usually port 4318.
    HttpProtobuf,
}

/// The checked tracing configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// The URL the exporter sends to, in full (for OTLP/HTTP, with its path); `None`:
    /// spans are not exported.
    pub endpoint: Option<String>,
    /// Transport.
    pub protocol: Protocol,
    /// Bound on one export.
    pub timeout: Duration,
    /// Bound on spans waiting for export.
    pub queue_size: usize,
    /// Share of TCP connections traced.
    pub tcp_ratio: f64,
    /// Share of UDP datagrams traced.
    pub udp_ratio: f64,
}

fn ratio(key: &str, text: &str) -> Result<f64, ConfigError> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(ConfigError::invalid(
            key,
            format!("invalid value `{text}`: expected a number from 0 to 1"),
        )),
    }
}

impl TraceConfig {
    /// Reads the keys, falling back to the OTEL_* variables in `env`.
    pub fn from_settings(
        settings: &Settings,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| env.get(*n).filter(|v| !v.trim().is_empty()).cloned())
        };
        let protocol_text = Some(settings.text("otlp_protocol")?)
            .filter(|p| !p.trim().is_empty())
            .or_else(|| {
                var(&[
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                ])
            })
            .unwrap_or_else(|| "http/protobuf".to_owned());
        let protocol = match protocol_text.trim() {
            "grpc" => Protocol::Grpc,
            "http/protobuf" | "http" => Protocol::HttpProtobuf,
            other => {
                return Err(ConfigError::invalid(
                    "otlp_protocol",
                    format!("invalid value `{other}`: expected `grpc` or `http/protobuf`"),
                ))
            }
        };
        // As the OpenTelemetry SDK environment specification has it: the signal-specific
        // variable is the full URL, used as it is; the general one (and `otlp_endpoint`)
        // is a base, to which OTLP/HTTP adds `/v1/traces`.
        let configured = Some(settings.text("otlp_endpoint")?).filter(|e| !e.trim().is_empty());
        let endpoint = match (configured, var(&["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])) {
            (Some(base), _) => Some((base, false)),
            (None, Some(full)) => Some((full, true)),
            (None, None) => var(&["OTEL_EXPORTER_OTLP_ENDPOINT"]).map(|base| (base, false)),
        };
        let endpoint = match endpoint {
            Some((url, _)) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(ConfigError::invalid(
                    "otlp_endpoint",
                    format!("invalid value `{url}`: expected a URL such as http://collector:4318"),
                ));
            }
            Some((url, false)) if protocol == Protocol::HttpProtobuf => Some(http_traces_url(&url)),
            other => other.map(|(url, _)| url),
        };
        let tcp_ratio = match settings.text("trace_sample_ratio")?.trim() {
            "" => sampler_from_env(env)?,
            text => ratio("trace_sample_ratio", text)?,
        };
        Ok(TraceConfig {
            endpoint,
            protocol,
            timeout: settings.duration("otlp_timeout", Duration::from_millis(1))?,
            queue_size: settings.number("otlp_queue_size", 16, 1 << 20)? as usize,
            tcp_ratio,
            udp_ratio: ratio(
                "udp_trace_sample_ratio",
                &settings.text("udp_trace_sample_ratio")?,
            )?,
        })
    }
}

/// The TCP sampling ratio from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
/// (the head-sampling kinds; parent-based ones behave alike here, as a connection has no
/// parent).
fn sampler_from_env(env: &HashMap<String, String>) -> Result<f64, ConfigError> {
    let arg = || {
        env.get("OTEL_TRACES_SAMPLER_ARG")
            .map(|a| ratio("OTEL_TRACES_SAMPLER_ARG", a))
            .unwrap_or(Ok(1.0))
    };
    match env.get("OTEL_TRACES_SAMPLER").map(|s| s.trim()) {
        None | Some("") | Some("always_on") | Some("parentbased_always_on") => Ok(1.0),
        Some("always_off") | Some("parentbased_always_off") => Ok(0.0),
        Some("traceidratio") | Some("parentbased_traceidratio") => arg(),
        Some(other) => Err(ConfigError::invalid(
            "OTEL_TRACES_SAMPLER",
            format!("unsupported sampler `{other}`: use always_on, always_off or traceidratio"),
        )),
    }
}

/// A head sampler decided before any span exists: a ratio compared with a fast random
/// number.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// The ratio scaled to `u64`: sampled when a random `u64` is below it.
    threshold: u64,
    /// Shortcut for ratio 1.
    always: bool,
}

impl Sampler {
    /// A sampler keeping `ratio` (0 to 1) of requests.
    pub fn new(ratio: f64) -> Self {
        Sampler {
            threshold: (ratio.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            always: ratio >= 1.0,
        }
    }

    /// A sampler that never samples.
    pub fn never() -> Self {
        Sampler::new(0.0)
    }

    /// Whether to trace this request.
    #[inline]
    pub fn sample(&self) -> bool {
        self.always || (self.threshold > 0 && fastrand::u64(..) < self.threshold)
    }
}

/// Counters for what happens to spans, from the service's metrics (or nothing when
/// metrics are off).
#[derive(Debug, Clone, Default)]
pub struct SpanCounters {
    /// Spans the collector accepted.
    pub exported: Option<IntCounter>,
    /// Spans dropped because the queue was full.
    pub dropped_queue_full: Option<IntCounter>,
    /// Spans in exports that failed.
    pub dropped_export_failed: Option<IntCounter>,
}

fn add(counter: &Option<IntCounter>, n: u64) {
    if let Some(counter) = counter {
        counter.inc_by(n);
    }
}

/// State shared by [`CountingProcessor`] and [`CountingExporter`]: how many spans are
/// queued, so that a full queue is seen (and counted) before the batch processor drops
/// silently.
#[derive(Debug, Default)]
struct Queue {
    /// Spans handed to the batch processor and not yet exported or failed.
    pending: AtomicU64,
    /// When an export error was last logged (Unix seconds).
    last_error_log: AtomicU64,
}

/// Wraps the OTLP exporter to count exported and failed spans.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    counters: SpanCounters,
    queue: Arc<Queue>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        self.queue.pending.fetch_sub(n, Ordering::Relaxed);
        match &result {
            Ok(()) => add(&self.counters.exported, n),
            Err(error) => {
                add(&self.counters.dropped_export_failed, n);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let last = self.queue.last_error_log.load(Ordering::Relaxed);
                if now >= last + ERROR_LOG_INTERVAL.as_secs()
                    && self
                        .queue
                        .last_error_log
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(%error, spans = n, "trace export failed; spans dropped (logged at most every 10 s)");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Wraps the batch processor: drops (and counts) a span when the queue is full, instead
/// of letting the batch processor drop it unseen.
#[derive(Debug)]
struct CountingProcessor<P> {
    inner: P,
    counters: SpanCounters,
    queue: Arc<Queue>,
    capacity: u64,
}

impl<P> CountingProcessor<P> {
    fn new(inner: P, counters: &SpanCounters, queue: &Arc<Queue>, config: &TraceConfig) -> Self {
        CountingProcessor {
            inner,
            counters: counters.clone(),
            queue: Arc::clone(queue),
            capacity: config.queue_size as u64,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let queued = self.queue.pending.fetch_add(1, Ordering::Relaxed);
        if queued >= self.capacity {
            self.queue.pending.fetch_sub(1, Ordering::Relaxed);
            add(&self.counters.dropped_queue_full, 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A base URL with the traces path, which the HTTP exporter wants in full; a base that
/// already ends in it is kept (a common way to write the general variable).
fn http_traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The resource: service name (OTEL_SERVICE_NAME wins), version, instance id, and
/// OTEL_RESOURCE_ATTRIBUTES (read by the SDK).
fn resource(service: &str, version: &str, env: &HashMap<String, String>) -> Resource {
    let instance = format!(
        "{}-{}",
        env.get("HOSTNAME")
            .cloned()
            .unwrap_or_else(|| "host".into()),
        std::process::id()
    );
    let mut builder = Resource::builder().with_attributes([
        KeyValue::new("service.version", version.to_owned()),
        KeyValue::new("service.instance.id", instance),
        KeyValue::new("service.namespace", "inetsvc"),
    ]);
    if env.get("OTEL_SERVICE_NAME").is_none_or(|n| n.is_empty()) {
        builder = builder.with_service_name(format!("inetsvc-{service}"));
    }
    builder.build()
}

/// Builds the tracer provider for `config`, or `None` when no endpoint is configured.
/// Must run inside the tokio runtime (the gRPC exporter needs its reactor).
pub fn provider(
    config: &TraceConfig,
    service: &str,
    version: &str,
    env: &HashMap<String, String>,
    counters: SpanCounters,
) -> Result<Option<SdkTracerProvider>, String> {
    let Some(endpoint) = &config.endpoint else {
        return Ok(None);
    };
    let queue = Arc::new(Queue::default());
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(config.queue_size)
        .with_max_export_batch_size(config.queue_size.min(512))
        .with_scheduled_delay(Duration::from_secs(1))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource(service, version, env));
    let counted = |exporter| CountingExporter {
        inner: exporter,
        counters: counters.clone(),
        queue: Arc::clone(&queue),
    };
    let provider = match config.protocol {
        // The blocking HTTP client runs on the batch processor's own thread.
        Protocol::HttpProtobuf => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint.clone())
                .with_timeout(config.timeout)
                .with_headers(HashMap::new())
                .build()
                .map_err(|e| format!("otlp_endpoint: {e}"))?;
            let processor =
                opentelemetry_sdk::trace::BatchSpanProcessor::builder(counted(exporter))
                    .with_batch_config(batch)
                    .build();
            builder
                .with_span_processor(CountingProcessor::new(processor, &counters, &queue, config))
        }
        // tonic needs the tokio reactor: the batch processor runs as a tokio task.
        Protocol::Grpc => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(config.timeout)
                .build()
                .map_err(|e| format!("otlp_endpoint: {e}"))?;
            let processor =
                opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                    counted(exporter),
                    opentelemetry_sdk::runtime::Tokio,
                )
                .with_batch_config(batch)
                .build();
            builder
                .with_span_processor(CountingProcessor::new(processor, &counters, &queue, config))
        }
    };
    Ok(Some(provider.build()))
}

/// Flushes and shuts the provider down, waiting at most [`SHUTDOWN_BOUND`] even when the
/// collector is dead or hung.
pub async fn shutdown(provider: SdkTracerProvider) {
    let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_BOUND));
    match tokio::time::timeout(SHUTDOWN_BOUND + Duration::from_millis(500), flush).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "trace flush at shutdown failed"),
        _ => tracing::warn!("trace flush at shutdown timed out; remaining spans dropped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sampler_keeps_about_its_ratio() {
        assert!(Sampler::new(1.0).sample());
        assert!(!Sampler::never().sample());
        let half = Sampler::new(0.5);
        let kept = (0..10_000).filter(|_| half.sample()).count();
        assert!((4_000..6_000).contains(&kept), "{kept}");
    }

    #[test]
    fn otel_sampler_variables_set_the_tcp_ratio() {
        assert_eq!(sampler_from_env(&env(&[])).unwrap(), 1.0);
        assert_eq!(
            sampler_from_env(&env(&[("OTEL_TRACES_SAMPLER", "always_off")])).unwrap(),
            0.0
        );
        assert_eq!(
            sampler_from_env(&env(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]))
            .unwrap(),
            0.25
        );
        let error = sampler_from_env(&env(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("OTEL_TRACES_SAMPLER: "), "{error}");
    }

    fn exporter_url(pairs: &[(&str, &str)]) -> Option<String> {
        let settings = crate::testing::default_settings(&crate::testing::TEST_SPEC);
        TraceConfig::from_settings(&settings, &env(pairs))
            .unwrap()
            .endpoint
    }

    #[test]
    fn endpoint_variables_follow_the_sdk_specification() {
        assert_eq!(exporter_url(&[]), None, "no endpoint, no export");
        // The general variable is a base: OTLP/HTTP adds the signal's path.
        assert_eq!(
            exporter_url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        // The signal-specific one is the URL itself, whatever its path, and wins.
        assert_eq!(
            exporter_url(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:8080/ingest")
            ])
            .as_deref(),
            Some("http://t:8080/ingest")
        );
        // gRPC takes no path.
        assert_eq!(
            exporter_url(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            ])
            .as_deref(),
            Some("http://c:4317")
        );
    }

    #[test]
    fn http_endpoint_gets_the_traces_path_once() {
        assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(http_traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            http_traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
