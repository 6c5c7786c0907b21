//! Logging set-up for the long-running modes: one JSON object per line where CloudWatch reads
//! it, readable text on a terminal. Logs go to stderr; stdout is kept for results (`qp scale`
//! prints its plan there).

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
    /// JSON unless stderr is a terminal.
    #[default]
    Auto,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            "auto" | "" => Ok(LogFormat::Auto),
            _ => Err(format!(
                "'{s}' is not a log format: expected json, text or auto"
            )),
        }
    }
}

impl LogFormat {
    pub fn is_json(self) -> bool {
        match self {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => !std::io::stderr().is_terminal(),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides the default level (info), in the
/// `target=level,level` form (`Targets`: the common RUST_LOG syntax without EnvFilter's regex
/// engine, which cost the static binary ~0.3 MB).
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests, Lambda re-entry) is harmless: keep the first.
    let _ = if format.is_json() {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
}

/// The level filter for a `RUST_LOG` value; unset or unparseable means info.
fn filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("auto".parse::<LogFormat>(), Ok(LogFormat::Auto));
        assert!("xml".parse::<LogFormat>().is_err());
        assert!(LogFormat::Json.is_json());
        assert!(!LogFormat::Text.is_json());
    }

    #[test]
    fn rust_log_sets_levels_per_target() {
        use tracing::Level;
        let default = filter(None);
        assert!(default.would_enable("qp::work", &Level::INFO));
        assert!(!default.would_enable("qp::work", &Level::DEBUG));
        let custom = filter(Some("warn,qp=debug"));
        assert!(custom.would_enable("qp::work", &Level::DEBUG));
        assert!(!custom.would_enable("aws_smithy_runtime", &Level::INFO));
        let bad = filter(Some("qp=loud"));
        assert!(bad.would_enable("qp", &Level::INFO));
        assert!(!bad.would_enable("qp", &Level::DEBUG));
    }
}
