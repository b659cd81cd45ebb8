//! Logs through `tracing`, as text or JSON lines on stderr (stdout stays free for
//! `--print-config` and tools), and the OpenTelemetry layer that turns spans into traces.
//!
//! The log filter (`log_level`) applies to log lines only: connection spans reach the
//! OpenTelemetry layer at INFO whatever the log level, so `log_level = "warn"` quietens
//! the logs without losing traces. In JSON, a line written inside a traced connection
//! carries the span's fields, `trace_id` and `span_id` among them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::options::{LogFormat, RuntimeConfig};

/// Installs the global subscriber. The filter was validated when the config was loaded.
pub fn init(config: &RuntimeConfig, traces: Option<&SdkTracerProvider>) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
    };
    let traces = traces.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("inetsvc"))
            .with_filter(LevelFilter::INFO)
    });
    // A second init (several services in one test process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
}
