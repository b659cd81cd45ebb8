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
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::options::{LogFormat, RuntimeConfig};

/// Installs the global subscriber. The filter was validated when the config was loaded.
pub fn init(config: &RuntimeConfig, traces: Option<&SdkTracerProvider>) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Behind a reload handle, so that a reload can change `log_level` live.
    let (filter, handle) = reload::Layer::new(filter);
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
    if tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok()
    {
        let _ = LEVEL.set(handle);
    }
}

/// The handle that changes the log filter of the installed subscriber.
static LEVEL: std::sync::OnceLock<reload::Handle<EnvFilter, Registry>> = std::sync::OnceLock::new();

/// Changes the log filter to `directive` (already checked when the config was loaded).
pub fn set_level(directive: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(directive).map_err(|e| e.to_string())?;
    match LEVEL.get() {
        Some(handle) => handle.reload(filter).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// At most one log line a second for an event that a client can cause at will, with the
/// number of lines left out since the last one.
#[derive(Debug)]
pub struct Throttle {
    /// Milliseconds since `base` of the last line written, plus one (0: never).
    last: std::sync::atomic::AtomicU64,
    /// Lines left out since then.
    suppressed: std::sync::atomic::AtomicU64,
    base: std::sync::OnceLock<std::time::Instant>,
}

impl Throttle {
    /// A throttle that lets the first line through.
    pub const fn new() -> Self {
        Throttle {
            last: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
            base: std::sync::OnceLock::new(),
        }
    }

    /// `Some(lines left out before this one)` when a line may be written at `now`, else
    /// `None` (and the line is counted as left out).
    pub fn admit(&self, now: std::time::Instant) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let base = *self.base.get_or_init(|| now);
        let at = now.saturating_duration_since(base).as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && at < last + 1000 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another thread wrote the line for this second.
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn one_line_a_second_with_the_count_left_out() {
        let throttle = Throttle::new();
        let start = Instant::now();
        assert_eq!(throttle.admit(start), Some(0));
        for i in 1..=500 {
            assert_eq!(throttle.admit(start + Duration::from_millis(i)), None);
        }
        assert_eq!(
            throttle.admit(start + Duration::from_millis(1000)),
            Some(500)
        );
        assert_eq!(throttle.admit(start + Duration::from_millis(1500)), None);
        assert_eq!(throttle.admit(start + Duration::from_millis(2100)), Some(1));
    }
}
