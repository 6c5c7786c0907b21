//! `qp scale`: one tick of the scheduled scaler, as a CLI command or as the Lambda `bootstrap`.
//!
//! A tick reads the queue depth and counts the worker tasks (concurrently), calls the pure
//! [`decision::decide`], and launches the difference with [`launch::launch`]. The outcome is one
//! JSON [`Report`]: stdout in the CLI, the response (and a log line) in Lambda.
//!
//! A repeated event id never launches twice: RunTask client tokens derive from it (ECS honours
//! them for 24 hours), and before launching the tick looks for running tasks tagged with it
//! (moto, and ECS for tokens older than a day, would otherwise start the tasks again).

pub mod decision;
pub mod lambda;
pub mod launch;
pub mod metrics;

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use crate::aws::depth::Depth;
use crate::aws::ecs::Tasks;
use crate::cli::ScaleArgs;
use crate::config::scale::ScaleConfig;
use decision::{Observed, decide};
use launch::{FailureReport, Launched, TAG_EVENT_ID, tag_value};

/// The outcome of one tick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub event_id: String,
    pub dry_run: bool,
    pub enabled: bool,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// What the formula counted: visible (+ in_flight with QP_COUNT_IN_FLIGHT).
    pub backlog: u64,
    pub running: u64,
    pub desired: u64,
    /// Tasks the tick set out to launch (what a dry run would launch).
    pub launch: u64,
    /// Tasks actually started.
    pub launched: Launched,
    pub failures: Vec<FailureReport>,
    /// RunTask calls made.
    pub run_task_calls: u32,
    pub reason: String,
}

/// Why a tick did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// Reading the queue or the tasks failed: nothing was decided.
    #[error("{0}")]
    Aws(crate::aws::AwsError),
    /// Launches were needed and none started; the report has the failures.
    #[error("launched 0 of {} tasks: {}", .0.launch, first_failure(.0))]
    NothingLaunched(Box<Report>),
}

fn first_failure(r: &Report) -> &str {
    r.failures
        .first()
        .map_or("no task started", |f| f.reason.as_str())
}

/// One tick. `event_id` identifies it (the scheduled event's id in Lambda).
pub async fn tick<Q: Depth, T: Tasks>(
    cfg: &ScaleConfig,
    queue: &Q,
    tasks: &T,
    event_id: &str,
) -> Result<Report, TickError> {
    let (depth, running) = tokio::join!(
        queue.depth(&cfg.queue_url),
        tasks.running(&cfg.cluster, &cfg.family)
    );
    let depth = depth.map_err(TickError::Aws)?;
    let running = running.map_err(TickError::Aws)?;
    let observed = Observed {
        visible: depth.visible,
        in_flight: depth.in_flight,
        delayed: depth.delayed,
        running: running.len() as u64,
    };
    let d = decide(&observed, &cfg.policy);
    let mut report = Report {
        event_id: event_id.to_owned(),
        dry_run: cfg.dry_run,
        enabled: cfg.policy.enabled,
        visible: observed.visible,
        in_flight: observed.in_flight,
        delayed: observed.delayed,
        backlog: d.backlog,
        running: observed.running,
        desired: d.desired,
        launch: d.launch,
        launched: Launched::default(),
        failures: Vec::new(),
        run_task_calls: 0,
        reason: d.reason,
    };
    if cfg.dry_run || report.launch == 0 {
        if cfg.dry_run {
            report.reason.push_str(" (dry run)");
        }
        return Ok(report);
    }
    if !running.is_empty() {
        let tag = tag_value(event_id);
        let already = tasks
            .count_tagged(&cfg.cluster, &running, TAG_EVENT_ID, &tag)
            .await
            .map_err(TickError::Aws)?;
        if already > 0 {
            report.launch = 0;
            report.reason = format!(
                "event {event_id} already launched {already} of the {} running tasks \
                 (a repeated delivery): nothing to launch",
                report.running
            );
            return Ok(report);
        }
    }
    let out = launch::launch(tasks, cfg, event_id, report.launch).await;
    report.launched = out.launched;
    report.failures = out.failures;
    report.run_task_calls = out.calls;
    if report.launched.total < report.launch {
        report.reason.push_str(&format!(
            "; started {} ({} failures)",
            report.launched.total,
            report.failures.len()
        ));
    }
    if report.launched.total == 0 && !out.token_conflict {
        return Err(TickError::NothingLaunched(Box::new(report)));
    }
    Ok(report)
}

/// The id of a CLI tick without `--event-id`: the current minute, so two runs in the same minute
/// count as one event.
pub fn minute_event_id(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("cli-{}", secs / 60)
}

/// `qp scale`: Lambda when `AWS_LAMBDA_RUNTIME_API` is set (as it is for `bootstrap` on Lambda),
/// otherwise one tick printed to stdout.
pub fn main(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let runtime_api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let cfg = match ScaleConfig::from_args(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            if let Some(api) = &runtime_api {
                lambda::report_init_error(api, &e);
            }
            return Err(e.into());
        }
    };
    crate::logging::init(cfg.log_format);
    // A tick is a handful of network calls in sequence: one thread starts faster and is enough.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime_api {
        Some(_) => rt.block_on(lambda::serve(cfg)),
        None => rt.block_on(cli(cfg)),
    }
}

async fn cli(cfg: ScaleConfig) -> anyhow::Result<ExitCode> {
    let clients = crate::aws::Clients::load(false).await;
    let event_id = cfg
        .event_id
        .clone()
        .unwrap_or_else(|| minute_event_id(std::time::SystemTime::now()));
    let (report, code) = match tick(&cfg, &clients.sqs, &clients.ecs, &event_id).await {
        Ok(report) => (report, ExitCode::SUCCESS),
        Err(TickError::Aws(e)) => return Err(e.into()),
        Err(e @ TickError::NothingLaunched(_)) => {
            eprintln!("qp: {e}");
            let TickError::NothingLaunched(report) = e else {
                unreachable!()
            };
            (*report, ExitCode::FAILURE)
        }
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &report)?;
    writeln!(out)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::aws::depth::QueueDepth;
    use crate::aws::ecs::{RunError, RunOutcome, RunRequest, Started};
    use crate::test_util::block_on;

    struct Queue(QueueDepth);

    impl Depth for Queue {
        async fn depth(&self, _: &str) -> Result<QueueDepth, crate::aws::AwsError> {
            Ok(self.0)
        }
    }

    type Tags = Vec<(String, String)>;

    /// Running tasks with their tags; RunTask adds to them, or fails with `refuse`.
    #[derive(Default)]
    struct Cluster {
        tasks: Mutex<Vec<(String, Tags)>>,
        refuse: Option<String>,
    }

    impl Tasks for Cluster {
        async fn running(&self, _: &str, _: &str) -> Result<Vec<String>, crate::aws::AwsError> {
            Ok(self
                .tasks
                .lock()
                .unwrap()
                .iter()
                .map(|t| t.0.clone())
                .collect())
        }
        async fn count_tagged(
            &self,
            _: &str,
            arns: &[String],
            k: &str,
            v: &str,
        ) -> Result<usize, crate::aws::AwsError> {
            let tasks = self.tasks.lock().unwrap();
            Ok(tasks
                .iter()
                .filter(|t| arns.contains(&t.0) && t.1.iter().any(|(tk, tv)| tk == k && tv == v))
                .count())
        }
        async fn run(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
            if let Some(reason) = &self.refuse {
                return Ok(RunOutcome {
                    started: vec![],
                    failures: vec![crate::aws::ecs::Failure {
                        arn: None,
                        reason: reason.clone(),
                        detail: None,
                    }],
                });
            }
            let mut tasks = self.tasks.lock().unwrap();
            let mut out = RunOutcome::default();
            for _ in 0..req.count {
                let arn = format!("arn:task/{}", tasks.len());
                tasks.push((arn.clone(), req.tags.clone()));
                out.started.push(Started {
                    arn,
                    capacity_provider: "FARGATE_SPOT".into(),
                });
            }
            Ok(out)
        }
    }

    use crate::config::scale::test_config as cfg;

    fn queue(visible: u64) -> Queue {
        Queue(QueueDepth {
            visible,
            in_flight: 0,
            delayed: 0,
        })
    }

    #[test]
    fn a_repeated_event_launches_once() {
        let cluster = Cluster::default();
        let r = block_on(tick(&cfg(), &queue(35), &cluster, "ev-1")).unwrap();
        assert_eq!((r.desired, r.launch, r.launched.total), (4, 4, 4));
        // The queue grew, but the same event must not launch again.
        let r = block_on(tick(&cfg(), &queue(75), &cluster, "ev-1")).unwrap();
        assert_eq!(
            (r.running, r.desired, r.launch, r.launched.total),
            (4, 8, 0, 0)
        );
        assert!(r.reason.contains("already launched 4"), "{}", r.reason);
        // The next event does.
        let r = block_on(tick(&cfg(), &queue(75), &cluster, "ev-2")).unwrap();
        assert_eq!((r.launch, r.launched.total), (4, 4));
    }

    #[test]
    fn dry_run_launches_nothing() {
        let cluster = Cluster::default();
        let cfg = ScaleConfig {
            dry_run: true,
            ..cfg()
        };
        let r = block_on(tick(&cfg, &queue(35), &cluster, "ev")).unwrap();
        assert_eq!((r.launch, r.launched.total, r.run_task_calls), (4, 0, 0));
        assert!(r.dry_run);
        assert!(cluster.tasks.lock().unwrap().is_empty());
    }

    #[test]
    fn nothing_launched_when_needed_is_an_error() {
        let cluster = Cluster {
            refuse: Some("RESOURCE:MEMORY".into()),
            ..Cluster::default()
        };
        let err = block_on(tick(&cfg(), &queue(5), &cluster, "ev")).unwrap_err();
        assert_eq!(err.to_string(), "launched 0 of 1 tasks: RESOURCE:MEMORY");
        let TickError::NothingLaunched(r) = err else {
            panic!()
        };
        assert_eq!(r.failures.len(), 1);
    }

    #[test]
    fn report_fields() {
        let cluster = Cluster::default();
        let r = block_on(tick(&cfg(), &queue(12), &cluster, "ev")).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        for field in [
            "visible",
            "in_flight",
            "delayed",
            "backlog",
            "running",
            "desired",
            "launch",
        ] {
            assert!(v[field].is_u64(), "{field}: {v}");
        }
        assert_eq!(v["launched"]["total"], 2);
        assert_eq!(v["launched"]["by_capacity_provider"]["FARGATE_SPOT"], 2);
        assert_eq!(v["event_id"], "ev");
        assert_eq!(v["dry_run"], false);
        assert!(v["failures"].as_array().unwrap().is_empty());
    }

    #[test]
    fn minute_ids() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(120 * 60 + 59);
        assert_eq!(minute_event_id(t), "cli-120");
    }
}
