//! Settings of the operator's commands, `qp status` and `qp redrive`: the same variables `qp work`
//! and `qp scale` read, validated the same way.

use super::ConfigError;
use super::parse::{optional, required};
use super::scale::{Policy, family_of, policy};
use crate::cli::{RedriveArgs, StatusArgs};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusConfig {
    pub queue_url: String,
    pub dlq_url: Option<String>,
    pub cluster: String,
    /// The worker family the tasks are counted by.
    pub family: String,
    pub policy: Policy,
    pub json: bool,
}

impl StatusConfig {
    pub fn from_args(args: StatusArgs) -> Result<StatusConfig, ConfigError> {
        let queue_url = required(args.queues.queue_url, "QP_QUEUE_URL", "queue-url")?;
        let (cluster, td) = super::workers(args.workers)?;
        Ok(StatusConfig {
            dlq_url: optional(args.queues.dlq_url),
            queue_url: queue_url.trim().to_owned(),
            cluster,
            family: family_of(&td)?,
            policy: policy(&args.policy)?,
            json: args.json,
        })
    }
}

/// How `qp redrive` moves messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// StartMessageMoveTask, else receive/send/delete.
    Auto,
    MoveTask,
    Batch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedriveConfig {
    pub queue_url: String,
    pub dlq_url: String,
    pub reason: Option<String>,
    pub rate: Option<u32>,
    pub method: Method,
    pub hold_secs: u32,
}

impl RedriveConfig {
    pub fn from_args(args: RedriveArgs) -> Result<RedriveConfig, ConfigError> {
        let queue_url = required(args.queues.queue_url, "QP_QUEUE_URL", "queue-url")?
            .trim()
            .to_owned();
        let dlq_url = required(args.queues.dlq_url, "QP_DLQ_URL", "dlq-url")?
            .trim()
            .to_owned();
        if queue_url == dlq_url {
            return Err(ConfigError::new(
                "QP_DLQ_URL",
                "QP_DLQ_URL is the same queue as QP_QUEUE_URL: nothing to move",
            ));
        }
        let method = match args.method.trim() {
            "auto" => Method::Auto,
            "move-task" => Method::MoveTask,
            "batch" => Method::Batch,
            other => {
                return Err(ConfigError::new(
                    "--method",
                    format!("--method: '{other}' is not auto, move-task or batch"),
                ));
            }
        };
        let reason = optional(args.reason);
        // SQS's move task moves everything: a filter needs the messages read one by one.
        if reason.is_some() && method == Method::MoveTask {
            return Err(ConfigError::new(
                "--reason",
                "--reason needs --method batch or auto: SQS's move task cannot filter",
            ));
        }
        if args.rate.is_some() && method == Method::Batch {
            return Err(ConfigError::new(
                "--rate",
                "--rate applies to SQS's move task, not to --method batch",
            ));
        }
        Ok(RedriveConfig {
            queue_url,
            dlq_url,
            reason,
            rate: args.rate,
            method,
            hold_secs: args.hold_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(argv: &[&str]) -> Command {
        Cli::try_parse_from(argv).unwrap().command
    }

    #[test]
    fn status_reads_the_scale_and_work_settings() {
        let Command::Status(args) = parse(&[
            "qp",
            "status",
            "--queue-url",
            " https://q ",
            "--cluster",
            "qp",
            "--task-definition",
            "qp-worker:3",
            "--max-tasks",
            "4",
        ]) else {
            panic!("not status")
        };
        let c = StatusConfig::from_args(args).unwrap();
        assert_eq!(c.queue_url, "https://q");
        assert_eq!(c.family, "qp-worker");
        assert_eq!(c.dlq_url, None);
        assert_eq!(c.policy.max_tasks, 4);
        assert!(!c.json);
        let Command::Status(args) = parse(&["qp", "status", "--queue-url", "q"]) else {
            panic!()
        };
        let err = StatusConfig::from_args(args).unwrap_err();
        assert!(err.message.contains("QP_CLUSTER"), "{err}");
    }

    #[test]
    fn redrive_options() {
        let redrive = |extra: &[&str]| {
            let mut argv = vec!["qp", "redrive", "--queue-url", "q", "--dlq-url", "d"];
            argv.extend_from_slice(extra);
            let Command::Redrive(args) = parse(&argv) else {
                panic!()
            };
            RedriveConfig::from_args(args)
        };
        let c = redrive(&[]).unwrap();
        assert_eq!(
            (c.method, c.reason, c.rate, c.hold_secs),
            (Method::Auto, None, None, 60)
        );
        let c = redrive(&["--reason", "not_image", "--method", "batch"]).unwrap();
        assert_eq!(
            (c.method, c.reason.as_deref()),
            (Method::Batch, Some("not_image"))
        );
        for (extra, words) in [
            (&["--method", "fast"][..], "--method"),
            (&["--reason", "x", "--method", "move-task"][..], "--reason"),
            (&["--rate", "5", "--method", "batch"][..], "--rate"),
        ] {
            let err = redrive(extra).unwrap_err();
            assert!(err.message.starts_with(words), "{extra:?}: {err}");
        }
        let Command::Redrive(args) = parse(&["qp", "redrive", "--queue-url", "q"]) else {
            panic!()
        };
        assert!(
            RedriveConfig::from_args(args)
                .unwrap_err()
                .message
                .contains("QP_DLQ_URL")
        );
        assert!(Cli::try_parse_from(["qp", "redrive", "--rate", "501"]).is_err());
    }
}
