//! Validated settings. clap ([`crate::cli`]) holds raw values from flags and `QP_*` variables;
//! this layer turns them into the settings each mode runs with, or an error that names the
//! variable to fix. Nothing here touches the network or the file system.

pub mod enqueue;
pub mod parse;
pub mod resize;
pub mod scale;
pub mod status;
pub mod work;

use crate::cli::{DestArgs, ImageArgs, WorkersArgs};
use crate::image::ResizeSpec;
pub use parse::required;

/// A missing or malformed setting. Reported before any work starts, with exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The setting to fix: its variable (`QP_CAPACITY`), or its flag or argument where it has
    /// none (`--event-id`, `S3_URL`).
    pub var: &'static str,
    /// The line printed: what is wrong, naming the setting.
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            var,
            message: message.into(),
        }
    }
}

/// The image pipeline's settings from the shared flags.
pub fn resize_spec(args: &ImageArgs) -> Result<ResizeSpec, ConfigError> {
    let mut sizes = args.sizes.clone();
    // One output per distinct size: a repeated size would only overwrite itself.
    let mut seen = std::collections::HashSet::new();
    sizes.retain(|s| seen.insert(*s));
    if sizes.is_empty() {
        return Err(ConfigError::new(
            "QP_SIZES",
            "QP_SIZES (or --size) lists no size",
        ));
    }
    Ok(ResizeSpec {
        sizes,
        mode: args.mode,
        quality: args.quality,
        max_pixels: args.max_pixels,
        background: args.background,
    })
}

/// The destination bucket and key prefix (without leading or trailing slashes: empty means the
/// bucket's root), as `qp work` writes and `qp reconcile` reads them.
pub fn destination(args: DestArgs) -> Result<(String, String), ConfigError> {
    let bucket = required(args.dest_bucket, "QP_DEST_BUCKET", "dest-bucket")?;
    Ok((
        bucket.trim().to_string(),
        args.dest_prefix.trim().trim_matches('/').to_string(),
    ))
}

/// The worker tasks' cluster and task definition, both required and trimmed (the family they
/// are counted by is [`scale::family_of`] the latter).
pub fn workers(args: WorkersArgs) -> Result<(String, String), ConfigError> {
    let cluster = required(args.cluster, "QP_CLUSTER", "cluster")?;
    let td = required(
        args.task_definition,
        "QP_TASK_DEFINITION",
        "task-definition",
    )?;
    Ok((cluster.trim().to_owned(), td.trim().to_owned()))
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
