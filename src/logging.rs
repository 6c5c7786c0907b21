//! Logging set-up for the long-running modes: one JSON object per line where CloudWatch reads
//! it, readable text on a terminal. Logs go to stderr; stdout is kept for results (`qp scale`
//! prints its plan there).

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber. `RUST_LOG` overrides the default level (info).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, Lambda re-entry) is harmless: keep the first.
    let _ = if format.is_json() {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
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
}
