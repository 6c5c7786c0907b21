//! `qp redrive`: moves the DLQ's messages back to the queue once their cause is fixed.
//!
//! Two ways, one guarantee (a message may arrive twice, never be lost):
//!
//! - **SQS's move task** (StartMessageMoveTask): SQS moves every message itself, at `--rate`
//!   messages a second if given; qp waits and prints its progress.
//! - **Receive, send, delete** in batches of 10, where the move task is not available (emulators)
//!   or with `--reason`, which it cannot filter. A message is deleted from the DLQ only after the
//!   queue accepted it; a failed send leaves it in the DLQ, a failed delete leaves a copy in both
//!   (the worker's outputs are deterministic, so processing it twice is harmless). Messages of
//!   other reasons are held while the DLQ is read, then made visible again.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::aws::admin::{Admin, Held, MoveProgress};
use crate::aws::depth::Depth;
use crate::aws::sqs::{MAX_BATCH, Receipt};
use crate::cli::RedriveArgs;
use crate::config::status::{Method, RedriveConfig};

/// How often the move task's progress is read.
const POLL: Duration = Duration::from_secs(5);

/// Long poll of each receive: long enough that SQS asks all its servers, so an empty answer means
/// an empty DLQ, short enough not to drag the end of the run.
const RECEIVE_WAIT_SECS: u32 = 1;

/// Receives in a row that bring nothing new before the batch way stops.
const IDLE_RECEIVES: u32 = 3;

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `move_task` or `batch`.
    pub method: &'static str,
    /// Why the batch way was taken under `--method auto`.
    pub note: Option<String>,
    pub reason: Option<String>,
    /// Messages now on the queue (and gone from the DLQ, except `delete_failed`).
    pub moved: u64,
    /// Messages of another reason, left in the DLQ.
    pub skipped: u64,
    /// Messages the queue did not accept: still in the DLQ.
    pub send_failed: u64,
    /// Messages sent whose delete failed: on the queue and still in the DLQ (a second redrive
    /// moves them again: a duplicate, not a loss).
    pub delete_failed: u64,
    /// The DLQ's depth at the end (visible + in flight).
    pub dlq_remaining: u64,
}

/// Whether a message is to be moved: all of them, or those whose `qp_reason` is `reason`.
pub fn wanted(m: &Held, reason: Option<&str>) -> bool {
    reason.is_none_or(|r| m.reason.as_deref() == Some(r))
}

/// One line of progress on stderr.
fn progress(line: &str) {
    let _ = writeln!(std::io::stderr(), "qp redrive: {line}");
}

/// Runs the redrive `cfg` asks for.
pub async fn redrive<A: Admin + Depth>(admin: &A, cfg: &RedriveConfig) -> anyhow::Result<Report> {
    redrive_polling(admin, cfg, POLL).await
}

/// [`redrive`], reading the move task's progress every `poll`.
async fn redrive_polling<A: Admin + Depth>(
    admin: &A,
    cfg: &RedriveConfig,
    poll: Duration,
) -> anyhow::Result<Report> {
    let mut note = None;
    if cfg.reason.is_none() && cfg.method != Method::Batch {
        let source = admin.queue_arn(&cfg.dlq_url).await?;
        let dest = admin.queue_arn(&cfg.queue_url).await?;
        match admin.start_move(&source, &dest, cfg.rate).await {
            Ok(handle) => return move_task(admin, cfg, &source, &handle, poll).await,
            Err(e) if cfg.method == Method::Auto => {
                progress(&format!("{e}; moving by receive/send/delete instead"));
                note = Some(format!("{e}: moved by receive/send/delete instead"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut report = batch(admin, cfg).await?;
    report.note = note;
    Ok(report)
}

/// Waits for SQS's move task, printing its progress.
async fn move_task<A: Admin + Depth>(
    admin: &A,
    cfg: &RedriveConfig,
    source_arn: &str,
    handle: &str,
    poll: Duration,
) -> anyhow::Result<Report> {
    progress(&format!("move task started from {}", cfg.dlq_url));
    let mut last: Option<MoveProgress> = None;
    loop {
        let p = admin.move_progress(source_arn, handle).await?;
        if last.as_ref() != Some(&p) {
            let of = p.to_move.map_or_else(String::new, |n| format!(" of {n}"));
            progress(&format!("{}: moved {}{of}", p.status, p.moved));
        }
        match p.status.as_str() {
            "COMPLETED" => {
                let depth = admin.depth(&cfg.dlq_url).await?;
                return Ok(Report {
                    method: "move_task",
                    moved: p.moved,
                    dlq_remaining: depth.visible + depth.in_flight,
                    ..Report::default()
                });
            }
            "FAILED" | "CANCELLED" | "CANCELLING" => anyhow::bail!(
                "the move task from {} {} after moving {} messages: {}",
                cfg.dlq_url,
                p.status.to_lowercase(),
                p.moved,
                p.failure.as_deref().unwrap_or("no reason given")
            ),
            _ => {}
        }
        last = Some(p);
        tokio::time::sleep(poll).await;
    }
}

/// What became of a message read in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Skipped,
    SendFailed,
    /// Sent; its delete failed (retried once if it shows up again in this run).
    Sent,
    /// Sent; its delete failed twice: left for a later redrive (a duplicate, not a loss).
    SentGaveUp,
    Moved,
}

/// Receive, send, delete, until the DLQ has nothing this run has not seen.
async fn batch<A: Admin + Depth>(admin: &A, cfg: &RedriveConfig) -> anyhow::Result<Report> {
    let (dlq, queue) = (cfg.dlq_url.as_str(), cfg.queue_url.as_str());
    let mut fate: HashMap<String, Fate> = HashMap::new();
    // Held messages to make visible again at the end (skipped ones, failed sends), by id: only
    // the latest receipt handle of a message is valid.
    let mut release: HashMap<String, Receipt> = HashMap::new();
    let mut idle = 0;
    loop {
        let received = admin.hold(dlq, cfg.hold_secs, RECEIVE_WAIT_SECS).await?;
        let mut ids = HashSet::new();
        let mut fresh: Vec<&Held> = Vec::new();
        let mut retry_delete: Vec<Receipt> = Vec::new();
        for m in received.iter().filter(|m| ids.insert(m.id.as_str())) {
            match fate.get(&m.id) {
                None if wanted(m, cfg.reason.as_deref()) => fresh.push(m),
                None => {
                    fate.insert(m.id.clone(), Fate::Skipped);
                    release.insert(m.id.clone(), m.receipt());
                }
                // Already on the queue: only the delete is left to do.
                Some(Fate::Sent) => retry_delete.push(m.receipt()),
                // Seen already (its hold expired): leave it for the end's release.
                Some(Fate::Skipped | Fate::SendFailed) => {
                    release.insert(m.id.clone(), m.receipt());
                }
                Some(Fate::SentGaveUp | Fate::Moved) => {}
            }
        }
        // Done when the DLQ is empty, or shows only messages this run has dealt with (its held
        // ones come back as their hold ends) a few times in a row: a receive samples the queue,
        // so one such answer does not prove nothing else is left.
        if fresh.is_empty() && retry_delete.is_empty() {
            idle += 1;
            if received.is_empty() || idle >= IDLE_RECEIVES {
                break;
            }
            continue;
        }
        idle = 0;
        let retried: HashSet<String> = retry_delete.iter().map(|r| r.id.clone()).collect();
        let mut to_delete = retry_delete;
        if !fresh.is_empty() {
            let failed: HashSet<String> = match admin.send_batch(queue, &fresh).await {
                Ok(failures) => failures.into_iter().map(|f| f.id).collect(),
                Err(e) => {
                    progress(&format!("{e:#}: {} messages stay in the DLQ", fresh.len()));
                    fresh.iter().map(|m| m.id.clone()).collect()
                }
            };
            for m in &fresh {
                if failed.contains(&m.id) {
                    fate.insert(m.id.clone(), Fate::SendFailed);
                    release.insert(m.id.clone(), m.receipt());
                } else {
                    fate.insert(m.id.clone(), Fate::Sent);
                    to_delete.push(m.receipt());
                }
            }
        }
        // Only what the queue accepted is deleted.
        let deleted = match to_delete.is_empty() {
            true => Ok(Vec::new()),
            false => admin.delete_batch(dlq, &to_delete).await,
        };
        let not_deleted: HashSet<String> = match deleted {
            Ok(failures) => failures.into_iter().map(|f| f.id).collect(),
            Err(e) => {
                progress(&format!(
                    "{e:#}: {} messages sent but still in the DLQ",
                    to_delete.len()
                ));
                to_delete.iter().map(|r| r.id.clone()).collect()
            }
        };
        for r in &to_delete {
            let now = match fate.get(&r.id) {
                _ if !not_deleted.contains(&r.id) => Fate::Moved,
                // The second failure: stop retrying (an endpoint refusing deletes would
                // otherwise keep the run going as each hold expires).
                Some(Fate::Sent) if retried.contains(&r.id) => Fate::SentGaveUp,
                _ => Fate::Sent,
            };
            fate.insert(r.id.clone(), now);
        }
        let moved = fate.values().filter(|f| **f == Fate::Moved).count();
        progress(&format!("moved {moved}"));
    }
    let release: Vec<Receipt> = release
        .into_iter()
        .filter(|(id, _)| matches!(fate.get(id), Some(Fate::Skipped | Fate::SendFailed)))
        .map(|(_, r)| r)
        .collect();
    for chunk in release.chunks(MAX_BATCH) {
        // Best effort: a message not released reappears when its hold expires.
        if let Err(e) = admin.release_batch(dlq, chunk).await {
            progress(&format!(
                "{e:#}: held messages reappear in {} s",
                cfg.hold_secs
            ));
        }
    }
    let count = |f: Fate| fate.values().filter(|v| **v == f).count() as u64;
    let depth = admin.depth(dlq).await?;
    Ok(Report {
        method: "batch",
        note: None,
        reason: cfg.reason.clone(),
        moved: count(Fate::Moved),
        skipped: count(Fate::Skipped),
        send_failed: count(Fate::SendFailed),
        delete_failed: count(Fate::Sent) + count(Fate::SentGaveUp),
        dlq_remaining: depth.visible + depth.in_flight,
    })
}

/// `qp redrive`.
pub fn main(args: RedriveArgs) -> anyhow::Result<ExitCode> {
    let cfg = RedriveConfig::from_args(args)?;
    let report = crate::aws::with_clients(async |c| redrive(&c.sqs, &cfg).await)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &report)?;
    writeln!(out)?;
    if report.send_failed + report.delete_failed > 0 {
        eprintln!(
            "qp: {} messages not sent (still in {}), {} sent but not deleted (a second redrive \
             moves them again)",
            report.send_failed, cfg.dlq_url, report.delete_failed
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::aws::admin::{MoveError, Peeked};
    use crate::aws::depth::QueueDepth;
    use crate::aws::sqs::EntryFailure;
    use crate::test_util::block_on;

    #[test]
    fn the_reason_filter() {
        let m = Held::new("1", "r", "{}", Some("not_image"));
        let none = Held::new("2", "r", "{}", None);
        assert!(wanted(&m, None) && wanted(&none, None));
        assert!(wanted(&m, Some("not_image")));
        assert!(!wanted(&m, Some("truncated")) && !wanted(&none, Some("not_image")));
    }

    /// SQS's move task as a script of progress answers.
    struct MoveTask(Mutex<Vec<MoveProgress>>);

    fn p(status: &str, moved: u64) -> MoveProgress {
        MoveProgress {
            status: status.into(),
            moved,
            to_move: Some(5),
            failure: (status == "FAILED").then(|| "AccessDenied on the queue".into()),
        }
    }

    impl Depth for MoveTask {
        async fn depth(&self, _: &str) -> Result<QueueDepth, crate::aws::AwsError> {
            Ok(QueueDepth::default())
        }
    }

    impl Admin for MoveTask {
        async fn queue_arn(&self, url: &str) -> anyhow::Result<String> {
            Ok(format!("arn:{url}"))
        }
        async fn peek(&self, _: &str) -> anyhow::Result<Vec<Peeked>> {
            unreachable!("a redrive never peeks")
        }
        async fn hold(&self, _: &str, _: u32, _: u32) -> anyhow::Result<Vec<Held>> {
            unreachable!("the move task needs no receive")
        }
        async fn send_batch(&self, _: &str, _: &[&Held]) -> anyhow::Result<Vec<EntryFailure>> {
            unreachable!()
        }
        async fn delete_batch(&self, _: &str, _: &[Receipt]) -> anyhow::Result<Vec<EntryFailure>> {
            unreachable!()
        }
        async fn release_batch(&self, _: &str, _: &[Receipt]) -> anyhow::Result<Vec<EntryFailure>> {
            unreachable!()
        }
        async fn start_move(
            &self,
            s: &str,
            d: &str,
            rate: Option<u32>,
        ) -> Result<String, MoveError> {
            assert_eq!((s, d, rate), ("arn:dlq", "arn:q", Some(7)));
            Ok("handle".into())
        }
        async fn move_progress(&self, _: &str, handle: &str) -> anyhow::Result<MoveProgress> {
            assert_eq!(handle, "handle");
            Ok(self.0.lock().unwrap().remove(0))
        }
    }

    fn cfg() -> RedriveConfig {
        RedriveConfig {
            queue_url: "q".into(),
            dlq_url: "dlq".into(),
            reason: None,
            rate: Some(7),
            method: Method::MoveTask,
            hold_secs: 60,
        }
    }

    #[test]
    fn the_move_task_is_followed_to_its_end() {
        let script = vec![p("RUNNING", 0), p("RUNNING", 3), p("COMPLETED", 5)];
        let admin = MoveTask(Mutex::new(script));
        let r = block_on(redrive_polling(&admin, &cfg(), Duration::from_millis(1))).unwrap();
        assert_eq!((r.method, r.moved, r.note), ("move_task", 5, None));
        assert!(admin.0.lock().unwrap().is_empty());

        let admin = MoveTask(Mutex::new(vec![p("RUNNING", 1), p("FAILED", 2)]));
        let err = block_on(redrive_polling(&admin, &cfg(), Duration::from_millis(1)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dlq failed after moving 2") && err.contains("AccessDenied"),
            "{err}"
        );
    }
}
