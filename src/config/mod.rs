//! Validated settings. clap ([`crate::cli`]) holds raw values from flags and `QP_*` variables;
//! this layer turns them into the settings each mode runs with, or an error that names the
//! variable to fix. Nothing here touches the network or the file system.

pub mod enqueue;
pub mod scale;
pub mod status;
pub mod work;

use crate::cli::ImageArgs;
use crate::image::ResizeSpec;

/// A missing or malformed setting. Reported before any work starts, with exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A value that must be present: `env` and `flag` name where it can be given.
pub fn required<T: AsRef<str>>(value: Option<T>, env: &str, flag: &str) -> Result<T, ConfigError> {
    match value {
        Some(v) if !v.as_ref().trim().is_empty() => Ok(v),
        _ => Err(ConfigError(format!(
            "missing required setting {env} (or --{flag})"
        ))),
    }
}

/// The image pipeline's settings from the shared flags.
pub fn resize_spec(args: &ImageArgs) -> Result<ResizeSpec, ConfigError> {
    let mut sizes = args.sizes.clone();
    // One output per distinct size: a repeated size would only overwrite itself.
    let mut seen = std::collections::HashSet::new();
    sizes.retain(|s| seen.insert(*s));
    if sizes.is_empty() {
        return Err(ConfigError("QP_SIZES (or --size) lists no size".into()));
    }
    Ok(ResizeSpec {
        sizes,
        mode: args.mode,
        quality: args.quality,
        max_pixels: args.max_pixels,
        background: args.background,
    })
}

/// CPUs this process may really use. std reads the cgroup CPU quota on Linux, so a 1-vCPU
/// Fargate task gets 1 here even on a 16-core host.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Background, Mode, Size};

    #[test]
    fn required_names_the_variable() {
        assert_eq!(required(Some("x"), "QP_A", "a"), Ok("x"));
        for missing in [None, Some(""), Some("  ")] {
            let err = required(missing, "QP_QUEUE_URL", "queue-url").unwrap_err();
            assert!(err.0.contains("QP_QUEUE_URL"), "{err}");
            assert!(err.0.contains("--queue-url"), "{err}");
        }
    }

    #[test]
    fn duplicate_sizes_collapse() {
        let s = Size {
            width: 224,
            height: 224,
        };
        let args = ImageArgs {
            sizes: vec![s, s],
            mode: Mode::Fit,
            quality: 80,
            max_pixels: 10,
            background: Background([1, 2, 3]),
        };
        let spec = resize_spec(&args).unwrap();
        assert_eq!(spec.sizes, vec![s]);
        assert_eq!(
            (spec.mode, spec.quality, spec.max_pixels, spec.background),
            (Mode::Fit, 80, 10, Background([1, 2, 3]))
        );
    }
}
