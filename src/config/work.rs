//! Settings of `qp work`: [`WorkConfig::from_args`] validates the raw flags/variables.

use std::time::Duration;

use super::{ConfigError, destination, required, resize_spec};

/// Defaults shown by `--help` and applied by clap ([`crate::cli::WorkArgs`]).
pub const DEFAULT_DEST_PREFIX: &str = "processed";
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 90;
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 64 * 1024 * 1024;
use crate::cli::WorkArgs;
use crate::image::ResizeSpec;
use crate::logging::LogFormat;

/// Variables `qp work` cannot run without; terraform must set each (checked by a test).
pub const REQUIRED_ENV: &[&str] = &["QP_QUEUE_URL", "QP_DEST_BUCKET"];

/// Objects downloaded/uploaded at once per CPU when `QP_CONCURRENCY` is not set: S3 latency is
/// tens of milliseconds, a small image's CPU work a few, so several objects per CPU must be on the
/// wire to keep the CPU pool busy.
pub const DEFAULT_CONCURRENCY_PER_CPU: usize = 8;

/// Validated settings of the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkConfig {
    pub queue_url: String,
    pub dest_bucket: String,
    /// Without leading or trailing slashes; empty means outputs at the bucket's root.
    pub dest_prefix: String,
    pub spec: ResizeSpec,
    /// Threads of the decode/resize/encode pool.
    pub cpus: usize,
    /// Objects in flight (download, CPU, upload) at once.
    pub concurrency: usize,
    pub idle_timeout: Duration,
    pub dlq_url: Option<String>,
    pub shutdown_grace: Duration,
    pub force_path_style: bool,
    pub log_format: LogFormat,
    /// Overrides the queue's visibility timeout (seconds).
    pub visibility_timeout: Option<u32>,
    pub max_object_bytes: u64,
}

impl WorkConfig {
    pub fn from_args(args: WorkArgs) -> Result<WorkConfig, ConfigError> {
        Self::from_args_with_cpus(args, super::available_cpus())
    }

    /// As [`WorkConfig::from_args`], with the machine's CPU count given (tests).
    pub fn from_args_with_cpus(
        args: WorkArgs,
        available_cpus: usize,
    ) -> Result<WorkConfig, ConfigError> {
        let queue_url = required(args.queue_url, "QP_QUEUE_URL", "queue-url")?
            .trim()
            .to_string();
        let (dest_bucket, dest_prefix) = destination(args.dest)?;
        let dlq_url = args
            .dlq_url
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        if dlq_url.as_deref() == Some(queue_url.as_str()) {
            return Err(ConfigError::new(
                "QP_DLQ_URL",
                "QP_DLQ_URL is the same queue as QP_QUEUE_URL: failures would loop forever",
            ));
        }
        let spec = resize_spec(&args.image)?;
        let cpus = args.cpus.map_or(available_cpus, |c| c as usize).max(1);
        let concurrency = args
            .concurrency
            .map_or(cpus * DEFAULT_CONCURRENCY_PER_CPU, |c| c as usize)
            .max(1);
        Ok(WorkConfig {
            queue_url,
            dest_bucket,
            dest_prefix,
            spec,
            cpus,
            concurrency,
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            dlq_url,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            force_path_style: args.s3_force_path_style,
            log_format: args.log_format,
            visibility_timeout: args.visibility_timeout_secs,
            max_object_bytes: args.max_object_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(extra: &[&str]) -> WorkArgs {
        let mut argv = vec!["qp", "work"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Work(a) => a,
            _ => unreachable!(),
        }
    }

    const BASE: [&str; 4] = ["--queue-url", "https://q", "--dest-bucket", "out"];

    #[test]
    fn missing_values_name_the_variable() {
        let err = WorkConfig::from_args_with_cpus(args(&[]), 2).unwrap_err();
        assert!(err.message.contains("QP_QUEUE_URL"), "{err}");
        let err = WorkConfig::from_args_with_cpus(args(&["--queue-url", "q"]), 2).unwrap_err();
        assert!(err.message.contains("QP_DEST_BUCKET"), "{err}");
        let err =
            WorkConfig::from_args_with_cpus(args(&["--queue-url", "q", "--dest-bucket", " "]), 2)
                .unwrap_err();
        assert!(err.message.contains("QP_DEST_BUCKET"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = WorkConfig::from_args_with_cpus(args(&BASE), 2).unwrap();
        assert_eq!(c.queue_url, "https://q");
        assert_eq!(c.dest_prefix, "processed");
        assert_eq!((c.cpus, c.concurrency), (2, 16));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.shutdown_grace, Duration::from_secs(90));
        assert_eq!(c.dlq_url, None);
        assert_eq!(c.visibility_timeout, None);
        assert_eq!(c.spec, ResizeSpec::default());
    }

    #[test]
    fn overrides_and_normalisation() {
        let mut a = BASE.to_vec();
        a.extend([
            "--dest-prefix",
            "/out/models/",
            "--cpus",
            "3",
            "--dlq-url",
            "",
            "--visibility-timeout-secs",
            "5",
        ]);
        let c = WorkConfig::from_args_with_cpus(args(&a), 16).unwrap();
        assert_eq!(c.dest_prefix, "out/models");
        assert_eq!((c.cpus, c.concurrency), (3, 24));
        assert_eq!(c.dlq_url, None);
        assert_eq!(c.visibility_timeout, Some(5));
        let c = WorkConfig::from_args_with_cpus(
            args(&[
                "--queue-url",
                "q",
                "--dest-bucket",
                "b",
                "--concurrency",
                "1",
            ]),
            16,
        )
        .unwrap();
        assert_eq!((c.cpus, c.concurrency), (16, 1));
    }

    #[test]
    fn dlq_must_differ_from_the_queue() {
        let mut a = BASE.to_vec();
        a.extend(["--dlq-url", "https://q"]);
        let err = WorkConfig::from_args_with_cpus(args(&a), 1).unwrap_err();
        assert!(err.message.contains("QP_DLQ_URL"), "{err}");
    }
}
