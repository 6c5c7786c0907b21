//! `qp status`: where the pipeline stands, in one JSON object. The queue's counts, the DLQ's
//! count and a sample of its reasons (read with visibility timeout 0 and never deleted, so the
//! call leaves the DLQ as it was), the worker tasks by capacity provider, and what the scaler
//! would decide now (the pure [`crate::scale::decision::decide`], as `qp scale --dry-run`).
//!
//! [`gather`] makes the calls; [`summarise_tasks`], [`summarise_dlq`] and [`table`] are pure.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use serde::Serialize;

use crate::aws::admin::{Admin, Peeked, REASON_ATTRIBUTE, TaskState, TaskStates};
use crate::aws::depth::Depth;
use crate::cli::StatusArgs;
use crate::config::status::StatusConfig;
use crate::scale::decision::{Observed, decide};

/// Why `oldest_age_secs` is null: SQS's API has no such attribute.
pub const OLDEST_AGE_NOTE: &str = "SQS reports the oldest message's age only as the CloudWatch \
    metric ApproximateAgeOfOldestMessage (AWS/SQS), drawn on the dashboard; GetQueueAttributes \
    has no such attribute, and sampling the queue would count as a receive against its \
    maxReceiveCount";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub queue: QueueStatus,
    /// None without `QP_DLQ_URL`.
    pub dlq: Option<DlqStatus>,
    pub tasks: TaskSummary,
    pub scaler: ScalerView,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueStatus {
    pub url: String,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// Always null from the API (see `oldest_age_note`).
    pub oldest_age_secs: Option<u64>,
    pub oldest_age_note: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DlqStatus {
    pub url: String,
    /// Messages waiting (ApproximateNumberOfMessages).
    pub messages: u64,
    /// Received by someone and not yet deleted (a redrive in progress).
    pub in_flight: u64,
    /// How many messages the sample read (at most 10).
    pub sampled: usize,
    /// `qp_reason` -> messages of the sample; `(none)` for messages without one (moved there by
    /// the queue's redrive policy rather than by the worker).
    pub reasons: BTreeMap<String, u64>,
    /// Age of the oldest message in the sample, in seconds.
    pub oldest_sampled_age_secs: Option<u64>,
    pub sample: Vec<DlqSample>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DlqSample {
    pub message_id: String,
    pub reason: String,
    pub key: Option<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskSummary {
    pub cluster: String,
    pub family: String,
    /// Every task whose desired status is RUNNING: what the scaler counts as running.
    pub total: u64,
    /// Last status RUNNING.
    pub running: u64,
    /// Not RUNNING although wanted: still on its way (PROVISIONING, PENDING, ACTIVATING) or
    /// already stopping.
    pub pending: u64,
    pub by_capacity_provider: BTreeMap<String, ProviderCount>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProviderCount {
    pub running: u64,
    pub pending: u64,
}

/// What `qp scale` would decide now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScalerView {
    pub enabled: bool,
    pub backlog: u64,
    pub running: u64,
    pub desired: u64,
    pub launch: u64,
    pub reason: String,
}

/// Name used for tasks ECS places without a capacity provider (a launch type).
const NO_PROVIDER: &str = "(launch type)";
const NO_REASON: &str = "(none)";

/// Counts tasks by state and capacity provider. Tasks whose last status is not RUNNING have not
/// started yet (their desired status is RUNNING), so they are pending.
pub fn summarise_tasks(cluster: &str, family: &str, tasks: &[TaskState]) -> TaskSummary {
    let mut s = TaskSummary {
        cluster: cluster.to_owned(),
        family: family.to_owned(),
        total: tasks.len() as u64,
        ..TaskSummary::default()
    };
    for t in tasks {
        let provider = match t.capacity_provider.as_str() {
            "" => NO_PROVIDER,
            p => p,
        };
        let c = s
            .by_capacity_provider
            .entry(provider.to_owned())
            .or_default();
        if t.last_status == "RUNNING" {
            c.running += 1;
            s.running += 1;
        } else {
            c.pending += 1;
            s.pending += 1;
        }
    }
    s
}

/// The DLQ's part: its counts and what the sample says. `now_ms` is the clock (for ages).
pub fn summarise_dlq(
    url: &str,
    messages: u64,
    in_flight: u64,
    sample: &[Peeked],
    now_ms: u64,
) -> DlqStatus {
    let mut reasons = BTreeMap::new();
    // SQS may hand the same message twice in one receive: count it once.
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for m in sample.iter().filter(|m| seen.insert(m.id.as_str())) {
        let reason = m
            .attributes
            .get(REASON_ATTRIBUTE)
            .map_or(NO_REASON, String::as_str);
        *reasons.entry(reason.to_owned()).or_insert(0) += 1;
        out.push(DlqSample {
            message_id: m.id.clone(),
            reason: reason.to_owned(),
            key: m.attributes.get("qp_key").cloned(),
            error: m.attributes.get("qp_error").cloned(),
        });
    }
    DlqStatus {
        url: url.to_owned(),
        messages,
        in_flight,
        sampled: out.len(),
        reasons,
        oldest_sampled_age_secs: sample
            .iter()
            .filter_map(|m| m.sent_ms)
            .min()
            .map(|t| now_ms.saturating_sub(t) / 1000),
        sample: out,
    }
}

/// The short table a terminal gets.
pub fn table(s: &Status) -> String {
    let q = &s.queue;
    let mut out = format!(
        "queue   {}\n        visible {}, in flight {}, delayed {}, oldest: see the dashboard\n",
        crate::metrics::queue_name(&q.url),
        q.visible,
        q.in_flight,
        q.delayed
    );
    match &s.dlq {
        None => out.push_str("dlq     (QP_DLQ_URL not set)\n"),
        Some(d) => {
            out.push_str(&format!(
                "dlq     {}\n        messages {}, in flight {}",
                crate::metrics::queue_name(&d.url),
                d.messages,
                d.in_flight
            ));
            if d.sampled > 0 {
                let reasons: Vec<String> =
                    d.reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
                out.push_str(&format!(
                    "; sample of {}: {}",
                    d.sampled,
                    reasons.join(", ")
                ));
            }
            out.push('\n');
        }
    }
    let t = &s.tasks;
    out.push_str(&format!(
        "tasks   {} in {}\n        running {}, pending {}",
        t.family, t.cluster, t.running, t.pending
    ));
    for (provider, c) in &t.by_capacity_provider {
        out.push_str(&format!(
            "; {provider}: {} running, {} pending",
            c.running, c.pending
        ));
    }
    out.push('\n');
    let d = &s.scaler;
    out.push_str(&format!(
        "scaler  desired {}, would launch {}{}\n        {}\n",
        d.desired,
        d.launch,
        if d.enabled { "" } else { " (QP_ENABLED=false)" },
        d.reason
    ));
    out
}

/// Makes the calls (concurrently) and builds the status.
pub async fn gather<Q, T>(
    cfg: &StatusConfig,
    sqs: &Q,
    ecs: &T,
    now_ms: u64,
) -> anyhow::Result<Status>
where
    Q: Depth + Admin + Sync,
    T: TaskStates + Sync,
{
    let dlq = async {
        match &cfg.dlq_url {
            None => Ok(None),
            Some(url) => {
                // The count first: the sample's receive must not be counted as in flight.
                let depth = sqs.depth(url).await?;
                let sample = sqs.peek(url).await?;
                anyhow::Ok(Some(summarise_dlq(
                    url,
                    depth.visible,
                    depth.in_flight,
                    &sample,
                    now_ms,
                )))
            }
        }
    };
    let (depth, dlq, tasks) = tokio::join!(
        sqs.depth(&cfg.queue_url),
        dlq,
        ecs.task_states(&cfg.cluster, &cfg.family)
    );
    let (depth, dlq, tasks) = (depth?, dlq?, tasks?);
    let tasks = summarise_tasks(&cfg.cluster, &cfg.family, &tasks);
    let observed = Observed {
        visible: depth.visible,
        in_flight: depth.in_flight,
        delayed: depth.delayed,
        running: tasks.total,
    };
    let d = decide(&observed, &cfg.policy);
    Ok(Status {
        queue: QueueStatus {
            url: cfg.queue_url.clone(),
            visible: depth.visible,
            in_flight: depth.in_flight,
            delayed: depth.delayed,
            oldest_age_secs: None,
            oldest_age_note: OLDEST_AGE_NOTE,
        },
        dlq,
        scaler: ScalerView {
            enabled: cfg.policy.enabled,
            backlog: d.backlog,
            running: tasks.total,
            desired: d.desired,
            launch: d.launch,
            reason: d.reason,
        },
        tasks,
    })
}

/// `qp status`.
pub fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let cfg = StatusConfig::from_args(args)?;
    let status = crate::aws::with_clients(async |c| {
        gather(&cfg, &c.sqs, &c.ecs, crate::metrics::now_ms() as u64).await
    })?;
    let mut out = std::io::stdout().lock();
    if !cfg.json && std::io::stdout().is_terminal() {
        out.write_all(table(&status).as_bytes())?;
    } else {
        serde_json::to_writer(&mut out, &status)?;
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(last_status: &str, provider: &str) -> TaskState {
        TaskState {
            arn: format!("arn:{last_status}:{provider}"),
            last_status: last_status.into(),
            capacity_provider: provider.into(),
        }
    }

    fn peeked(id: &str, reason: Option<&str>, sent_ms: u64) -> Peeked {
        let mut attributes = BTreeMap::new();
        if let Some(r) = reason {
            attributes.insert("qp_reason".to_owned(), r.to_owned());
            attributes.insert("qp_key".to_owned(), format!("{id}.jpg"));
        }
        Peeked {
            id: id.into(),
            attributes,
            sent_ms: Some(sent_ms),
        }
    }

    #[test]
    fn tasks_by_state_and_provider() {
        let s = summarise_tasks(
            "qp",
            "qp-worker",
            &[
                task("RUNNING", "FARGATE_SPOT"),
                task("PENDING", "FARGATE_SPOT"),
                task("PROVISIONING", "FARGATE"),
                task("RUNNING", "FARGATE"),
                task("RUNNING", "FARGATE_SPOT"),
                task("RUNNING", ""),
            ],
        );
        assert_eq!((s.total, s.running, s.pending), (6, 4, 2));
        let by = |p: &str| s.by_capacity_provider[p];
        assert_eq!(
            by("FARGATE_SPOT"),
            ProviderCount {
                running: 2,
                pending: 1
            }
        );
        assert_eq!(
            by("FARGATE"),
            ProviderCount {
                running: 1,
                pending: 1
            }
        );
        assert_eq!(
            by(NO_PROVIDER),
            ProviderCount {
                running: 1,
                pending: 0
            }
        );
        assert_eq!(
            summarise_tasks("c", "f", &[]),
            TaskSummary {
                cluster: "c".into(),
                family: "f".into(),
                ..TaskSummary::default()
            }
        );
    }

    #[test]
    fn dlq_reasons_from_the_sample() {
        let sample = [
            peeked("a", Some("not_image"), 10_000),
            peeked("b", Some("truncated"), 4_000),
            peeked("c", Some("not_image"), 9_000),
            peeked("a", Some("not_image"), 10_000),
            peeked("d", None, 8_000),
        ];
        let d = summarise_dlq("https://q/dlq", 7, 1, &sample, 64_000);
        assert_eq!((d.messages, d.in_flight, d.sampled), (7, 1, 4));
        assert_eq!(
            d.reasons.into_iter().collect::<Vec<_>>(),
            [
                ("(none)".into(), 1),
                ("not_image".into(), 2),
                ("truncated".into(), 1)
            ]
        );
        assert_eq!(d.oldest_sampled_age_secs, Some(60));
        assert_eq!(d.sample[0].key.as_deref(), Some("a.jpg"));
        assert_eq!(d.sample[3].reason, "(none)");
        let empty = summarise_dlq("u", 0, 0, &[], 1);
        assert_eq!((empty.sampled, empty.oldest_sampled_age_secs), (0, None));
    }

    #[test]
    fn the_table_says_each_part() {
        let status = Status {
            queue: QueueStatus {
                url: "https://sqs/1/uploads".into(),
                visible: 35,
                in_flight: 3,
                delayed: 1,
                oldest_age_secs: None,
                oldest_age_note: OLDEST_AGE_NOTE,
            },
            dlq: Some(summarise_dlq(
                "https://sqs/1/uploads-dlq",
                2,
                0,
                &[
                    peeked("a", Some("not_image"), 0),
                    peeked("b", Some("corrupt"), 0),
                ],
                0,
            )),
            tasks: summarise_tasks("qp", "qp-worker", &[task("RUNNING", "FARGATE_SPOT")]),
            scaler: ScalerView {
                enabled: false,
                backlog: 38,
                running: 1,
                desired: 4,
                launch: 0,
                reason: "backlog 38 needs 4 tasks".into(),
            },
        };
        let t = table(&status);
        for words in [
            "queue   uploads\n",
            "visible 35, in flight 3, delayed 1",
            "dlq     uploads-dlq\n        messages 2, in flight 0; sample of 2: corrupt 1, not_image 1",
            "tasks   qp-worker in qp\n        running 1, pending 0; FARGATE_SPOT: 1 running, 0 pending",
            "desired 4, would launch 0 (QP_ENABLED=false)",
            "backlog 38 needs 4 tasks",
        ] {
            assert!(t.contains(words), "{words:?} not in\n{t}");
        }
        let no_dlq = table(&Status {
            dlq: None,
            ..status
        });
        assert!(no_dlq.contains("QP_DLQ_URL not set"), "{no_dlq}");
    }
}
