//! The parsers every mode's settings go through: each error names the variable (or flag) to fix.
//! The clap value parsers in [`crate::cli`] call the same functions, so a value means the same
//! thing whichever mode reads it.

use super::ConfigError;

/// A value that must be present: `env` and `flag` name where it can be given.
pub fn required<T: AsRef<str>>(
    value: Option<T>,
    env: &'static str,
    flag: &str,
) -> Result<T, ConfigError> {
    match value {
        Some(v) if !v.as_ref().trim().is_empty() => Ok(v),
        _ => Err(ConfigError::new(
            env,
            format!("missing required setting {env} (or --{flag})"),
        )),
    }
}

/// A value that is set and not blank, as given.
pub fn present(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// A value that is set and not blank, trimmed.
pub fn optional(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A whole number >= 1; unset, `default` is parsed instead.
pub fn count(
    v: Option<String>,
    env: &'static str,
    default: &'static str,
) -> Result<u32, ConfigError> {
    let v = present(v).unwrap_or_else(|| default.to_owned());
    match v.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ConfigError::new(
            env,
            format!("{env}: '{v}' is not a whole number of at least 1"),
        )),
    }
}

/// true/false, 1/0, yes/no, on/off (any case, blanks around ignored); None for anything else.
pub fn bool_value(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// [`bool_value`]; unset, `default` is parsed instead.
pub fn boolean(
    v: Option<String>,
    env: &'static str,
    default: &'static str,
) -> Result<bool, ConfigError> {
    let v = present(v).unwrap_or_else(|| default.to_owned());
    bool_value(&v).ok_or_else(|| {
        ConfigError::new(
            env,
            format!("{env}: '{v}' is not a boolean (true or false)"),
        )
    })
}

/// A comma list of ids: trimmed, blanks dropped, duplicates refused, at most `max`.
pub fn list(v: String, env: &'static str, max: usize) -> Result<Vec<String>, ConfigError> {
    let mut items: Vec<String> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(
                env,
                format!("{env}: '{item}' contains a space"),
            ));
        }
        if items.iter().any(|i| i == item) {
            return Err(ConfigError::new(
                env,
                format!("{env}: '{item}' is listed twice"),
            ));
        }
        items.push(item.to_owned());
    }
    if items.len() > max {
        return Err(ConfigError::new(
            env,
            format!("{env}: {} entries, ECS accepts at most {max}", items.len()),
        ));
    }
    Ok(items)
}

/// The punctuation ECS allows in tag values (besides letters, digits and spaces).
pub const TAG_PUNCTUATION: &str = "_.:/=+-@";

/// A character ECS allows in a tag value, the space aside.
pub fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || TAG_PUNCTUATION.contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_names_the_variable() {
        assert_eq!(required(Some("x"), "QP_A", "a"), Ok("x"));
        for missing in [None, Some(""), Some("  ")] {
            let err = required(missing, "QP_QUEUE_URL", "queue-url").unwrap_err();
            assert_eq!(err.var, "QP_QUEUE_URL");
            assert!(err.message.contains("QP_QUEUE_URL"), "{err}");
            assert!(err.message.contains("--queue-url"), "{err}");
        }
    }

    #[test]
    fn booleans() {
        for v in ["true", "1", "yes", "on", " On ", "TRUE"] {
            assert_eq!(bool_value(v), Some(true), "{v}");
        }
        for v in ["false", "0", "no", "off", "Off"] {
            assert_eq!(bool_value(v), Some(false), "{v}");
        }
        for v in ["", "y", "2", "enabled"] {
            assert_eq!(bool_value(v), None, "{v}");
        }
    }
}
