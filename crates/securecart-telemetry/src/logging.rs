//! Log setup: readable lines by default, JSON lines on request, always to standard error so
//! that standard output stays the command's own (tables, JSON answers).

use tracing_subscriber::EnvFilter;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The environment variable that overrides the log filter (tracing's `EnvFilter` syntax).
pub const LOG_FILTER_VARIABLE: &str = "SECURECART_LOG";

/// Installs the global subscriber. `ansi` is false when another process reads the lines
/// (the supervisor prefixes every child's lines with the child's name). Calling it twice is
/// harmless: the second call keeps the first subscriber.
pub fn init(format: LogFormat, ansi: bool) {
    let filter = EnvFilter::try_from_env(LOG_FILTER_VARIABLE)
        .unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,h2=warn,rustls=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
