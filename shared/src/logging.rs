//! Logs through `tracing`, as text or JSON lines on stderr (stdout stays free for
//! `--print-config` and tools).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, RuntimeConfig};

/// Installs the global subscriber. The filter was validated when the config was loaded.
pub fn init(config: &RuntimeConfig) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second init (several services in one test process) keeps the first subscriber.
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
