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

/// Lets through at most one log line per second (per throttle) and counts the ones it held
/// back, so that a failure hit by every request (a target group down under load) does not
/// turn the log into a copy of the traffic.
#[derive(Debug, Default)]
pub struct LogThrottle {
    /// The second (since the Unix epoch) of the last line let through.
    last_second: std::sync::atomic::AtomicU64,
    /// Lines held back since then.
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogThrottle {
    /// `Some(n)` if a line may be written now, `n` being how many were held back since the
    /// last one; `None` if this one is held back.
    pub fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let last = self.last_second.load(Ordering::Relaxed);
        if last != now
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogThrottle;

    #[test]
    fn a_throttle_lets_one_line_through_per_second() {
        let throttle = LogThrottle::default();
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        // The next second's first line reports the two held back. Waiting for the next second
        // would make the test slow, so the clock is moved by hand.
        throttle
            .last_second
            .store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(throttle.allow(), Some(2));
    }
}
