//! `qp work`: the Fargate worker draining the S3-notification queue.
//!
//! ```text
//!  receivers (long polls, 10 messages each) ──► dispatcher ──► one task per message
//!      │ registered in the Tracker (heartbeat)                   │ per object: GET ─► CPU pool ─► PUT
//!      ▼                                                         ▼
//!  idle clock: exit 0 after QP_IDLE_TIMEOUT_SECS empty     decide: delete / DLQ+delete / leave
//!                                                                ▼
//!                                                   acker: DeleteMessageBatch, visibility 0
//! ```
//!
//! Guarantees (at-least-once, nothing lost, nothing looping):
//!
//! - a message is deleted only once every record in it succeeded, or after its original body was
//!   accepted by the DLQ;
//! - transient failures leave the message to come back after its visibility timeout;
//! - the heartbeat keeps every held message invisible while work on it is pending;
//! - on shutdown, receiving stops, started messages get `QP_SHUTDOWN_GRACE_SECS` to finish, the
//!   others (and any unfinished at the deadline) are released with visibility 0.
//!
//! The logic is generic over [`ObjectStore`] and [`Queue`]; [`main`] wires in the SDK.

mod ack;
mod cpu_pool;
pub mod decide;
pub mod metrics;
mod pipeline;
mod receive;
#[cfg(test)]
mod tests;
mod tracker;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::aws::Clients;
use crate::aws::s3::{ObjectStore, S3Store};
use crate::aws::sqs::{MAX_BATCH, Queue, SqsQueue};
use crate::cli::WorkArgs;
use crate::config::work::WorkConfig;
use crate::metrics::Sink;
use ack::AckOp;
use cpu_pool::CpuPool;
use metrics::Stats;
use pipeline::Ctx;
use receive::{IdleClock, Receivers, Receiving, poll_wait};
use tracker::Tracker;

/// Visibility timeout used when the queue's own is 0 (which would hand every message to every
/// worker at once).
const FALLBACK_VISIBILITY_SECS: u32 = 30;

/// Why the worker stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Idle,
    Signal,
}

/// The totals of a run, also printed as the summary line.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub reason: StopReason,
    pub processed: u64,
    pub failed: u64,
    pub retried: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_deleted: u64,
    pub messages_dead_lettered: u64,
    pub messages_released: u64,
    pub elapsed: Duration,
    /// The last receive failed (the queue may be unreachable).
    pub receive_failing: bool,
}

impl Summary {
    pub fn images_per_sec(&self) -> f64 {
        self.processed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Async threads for `cpus` CPUs: half of them, 1 to 4. They only drive requests (most of a
/// request's time is the network's), and fewer threads hand tasks between them less often,
/// while the CPU pool gets every CPU. (bench/work.sh could not tell this from `cpus.min(4)` on
/// 2 shared vCPUs: the difference was inside its run-to-run noise.)
fn io_threads(cpus: usize) -> usize {
    cpus.div_ceil(2).clamp(1, 4)
}

/// The `qp work` entry: config, runtime, logging, clients, then [`run`] until idle or a signal.
pub fn main(args: WorkArgs) -> anyhow::Result<ExitCode> {
    // Validate before anything else: a missing variable is exit 2 with no AWS call made.
    let cfg = WorkConfig::from_args(args)?;
    crate::logging::init(cfg.log_format);
    // Async threads only wait on the network; the CPU work has its own pool. Both are sized to
    // the CPUs the task really has.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads(cfg.cpus))
        .thread_name("qp-io")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let clients = Clients::load(cfg.force_path_style).await;
        let store = S3Store::new(clients.s3.clone());
        let queue = SqsQueue::new(clients.sqs.clone(), cfg.queue_url.clone());
        let dlq = cfg
            .dlq_url
            .as_ref()
            .map(|u| SqsQueue::new(clients.sqs.clone(), u.clone()));
        run(
            cfg,
            store,
            queue,
            dlq,
            Sink::stdout(),
            crate::shutdown::signal(),
        )
        .await
    });
    // Abandoned requests (grace deadline) must not hold the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    let summary = result?;
    Ok(if summary.receive_failing && summary.processed == 0 {
        // Stopped "idle" only because the queue could not be read: make it visible to ECS.
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Drains the queue until it has been idle for `cfg.idle_timeout` or `shutdown` resolves: start,
/// dispatch, drain, report. EMF lines go to `metrics`.
pub async fn run<S: ObjectStore, Q: Queue>(
    cfg: WorkConfig,
    store: S,
    queue: Q,
    dlq: Option<Q>,
    metrics: Sink,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut worker = Worker::start(cfg, store, queue, dlq, metrics).await?;
    let reason = worker.dispatch(shutdown).await;
    let drained = worker.drain(reason).await;
    Ok(report(reason, &drained, started.elapsed()))
}

/// A running worker: the tasks it started and the channels between them.
struct Worker<S, Q> {
    cfg: Arc<WorkConfig>,
    ctx: Arc<Ctx<S, Q>>,
    stats: Arc<Stats>,
    tracker: Arc<Tracker>,
    receivers: Receivers<Q>,
    /// One task per dispatched message.
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    beat_stop: watch::Sender<bool>,
    heartbeat: JoinHandle<()>,
    acker: JoinHandle<()>,
    ack: mpsc::UnboundedSender<AckOp>,
}

impl<S: ObjectStore, Q: Queue> Worker<S, Q> {
    /// Reads the visibility timeout, then starts the acker, the heartbeat and the receive loops.
    async fn start(
        cfg: WorkConfig,
        store: S,
        queue: Q,
        dlq: Option<Q>,
        metrics: Sink,
    ) -> anyhow::Result<Worker<S, Q>> {
        let queue = Arc::new(queue);
        let (vt_secs, receive_vt) = visibility(&cfg, queue.as_ref()).await?;
        let vt = Duration::from_secs(u64::from(vt_secs));
        let receivers = cfg.concurrency.div_ceil(MAX_BATCH).clamp(1, 8);
        tracing::info!(
            queue = %cfg.queue_url, dest_bucket = %cfg.dest_bucket, dest_prefix = %cfg.dest_prefix,
            cpus = cfg.cpus, concurrency = cfg.concurrency, receivers, visibility_timeout_s = vt_secs,
            idle_timeout_s = cfg.idle_timeout.as_secs(), dlq = cfg.dlq_url.as_deref().unwrap_or(""),
            "qp work starting"
        );
        let cfg = Arc::new(cfg);
        let stats = Arc::new(Stats::default());
        let tracker = Arc::new(Tracker::default());
        let (stop, stop_rx) = watch::channel(false);
        let (beat_stop, beat_stop_rx) = watch::channel(false);
        let (ack, ack_rx) = mpsc::unbounded_channel();
        let acker = tokio::spawn(ack::acker(queue.clone(), stats.clone(), ack_rx));
        let heartbeat = tokio::spawn(tracker::heartbeat(
            queue.clone(),
            tracker.clone(),
            vt,
            beat_stop_rx,
        ));
        let ctx = Arc::new(Ctx {
            spec: Arc::new(cfg.spec.clone()),
            cfg: cfg.clone(),
            store: Arc::new(store),
            dlq: dlq.map(Arc::new),
            io: Arc::new(Semaphore::new(cfg.concurrency)),
            cpu: Arc::new(CpuPool::new(cfg.cpus)?),
            stats: stats.clone(),
            tracker: tracker.clone(),
            ack: ack.clone(),
            stop: stop_rx.clone(),
            queue_name: metrics::queue_name(&cfg.queue_url).to_string(),
            metrics,
        });
        let receiving = Receiving {
            queue,
            tracker: tracker.clone(),
            slots: Arc::new(Semaphore::new(cfg.concurrency.max(MAX_BATCH) + MAX_BATCH)),
            idle: Mutex::new(IdleClock::default()),
            idle_timeout: cfg.idle_timeout,
            wait: poll_wait(cfg.idle_timeout),
            vt,
            receive_vt,
            receive_failing: Default::default(),
            stop: stop_rx,
        };
        Ok(Worker {
            cfg,
            ctx,
            stats,
            tracker,
            receivers: Receivers::start(receiving, receivers),
            tasks: JoinSet::new(),
            stop,
            beat_stop,
            heartbeat,
            acker,
            ack,
        })
    }

    /// One task per received message, until a signal or until the queue has been idle (every
    /// receive loop ended) with no message left in work.
    async fn dispatch(&mut self, shutdown: impl Future<Output = ()>) -> StopReason {
        let mut emf_tick = tokio::time::interval(metrics::EMF_INTERVAL);
        emf_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => return StopReason::Signal,
                Some(batch) = self.receivers.batches.recv() => {
                    for (token, msg, slot) in batch {
                        self.tasks.spawn(pipeline::handle_message(self.ctx.clone(), token, msg, slot));
                    }
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = joined {
                        tracing::error!("message task failed: {e}");
                    }
                    if self.all_done() {
                        return StopReason::Idle;
                    }
                }
                // A receive loop ends by itself only once the queue has been idle for the timeout.
                Some(_) = self.receivers.loops.join_next(), if !self.receivers.loops.is_empty() => {
                    if self.all_done() {
                        return StopReason::Idle;
                    }
                }
                _ = emf_tick.tick() => self.emit_window(),
            }
        }
    }

    fn all_done(&self) -> bool {
        self.receivers.loops.is_empty() && self.tasks.is_empty() && self.tracker.is_empty()
    }

    fn emit_window(&self) {
        if let Some(w) = self.stats.take_window() {
            metrics::emit(&self.ctx.metrics, &self.ctx.queue_name, &w);
        }
    }

    /// The shutdown: stop receiving, give back what was never dispatched, let started messages
    /// finish within the grace period, release the rest, then flush the acknowledgements and
    /// the last metrics.
    async fn drain(self, reason: StopReason) -> Drained {
        let Worker {
            cfg,
            ctx,
            stats,
            tracker,
            mut receivers,
            mut tasks,
            stop,
            beat_stop,
            heartbeat,
            acker,
            ack,
        } = self;
        let release = |r| {
            let _ = ack.send(AckOp::Release(r));
        };
        // At idle every receive loop has already ended after an empty poll.
        let _ = stop.send(true);
        let signal = reason == StopReason::Signal;
        for token in receivers.stop(signal, cfg.shutdown_grace).await {
            if let Some(r) = tracker.remove(token) {
                release(r);
            }
        }
        if signal {
            tracing::info!(
                in_flight = tracker.len(),
                grace_s = cfg.shutdown_grace.as_secs(),
                "shutting down: finishing started messages, releasing the others"
            );
        }
        finish_started(&mut tasks, cfg.shutdown_grace).await;
        // Normally empty; after the deadline (or a receive cut between polling and dispatch)
        // these are messages nobody will finish: release them for another worker.
        let left = tracker.drain();
        if !left.is_empty() {
            tracing::warn!(messages = left.len(), "releasing unfinished messages");
            left.into_iter().for_each(release);
        }
        let _ = beat_stop.send(true);
        let _ = heartbeat.await;
        // The acker ends when the last sender is gone (the context holds one), after flushing.
        let (sink, queue_name) = (ctx.metrics.clone(), ctx.queue_name.clone());
        drop(ack);
        drop(ctx);
        if tokio::time::timeout(Duration::from_secs(15), acker)
            .await
            .is_err()
        {
            tracing::warn!("acknowledgements still pending at exit: those messages will come back");
        }
        if let Some(w) = stats.take_window() {
            metrics::emit(&sink, &queue_name, &w);
        }
        Drained {
            stats,
            receive_failing: receivers.receive_failing(),
        }
    }
}

/// What is left of a worker once it has stopped.
struct Drained {
    stats: Arc<Stats>,
    receive_failing: bool,
}

/// Started messages finish within the grace period (messages not started release themselves as
/// soon as they see the stop); past it they are cut.
async fn finish_started(tasks: &mut JoinSet<()>, grace: Duration) {
    let deadline = Instant::now() + grace;
    let drained = tokio::time::timeout_at(deadline, async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!("message task failed: {e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// The visibility timeout to hold messages for, and the one to ask for when receiving (None: the
/// queue's own).
async fn visibility<Q: Queue>(cfg: &WorkConfig, queue: &Q) -> anyhow::Result<(u32, Option<u32>)> {
    if let Some(v) = cfg.visibility_timeout {
        return Ok((v, Some(v)));
    }
    let v = queue
        .visibility_timeout()
        .await
        .context("reading the queue's visibility timeout (is QP_QUEUE_URL right?)")?;
    if v == 0 {
        tracing::warn!(
            "the queue's visibility timeout is 0: receiving with {FALLBACK_VISIBILITY_SECS} s"
        );
        return Ok((FALLBACK_VISIBILITY_SECS, Some(FALLBACK_VISIBILITY_SECS)));
    }
    Ok((v, None))
}

/// The run's totals, logged as the summary line.
fn report(reason: StopReason, drained: &Drained, elapsed: Duration) -> Summary {
    let stats = &drained.stats;
    let summary = Summary {
        reason,
        processed: Stats::get(&stats.processed),
        failed: Stats::get(&stats.failed),
        retried: Stats::get(&stats.retried),
        bytes_in: Stats::get(&stats.bytes_in),
        bytes_out: Stats::get(&stats.bytes_out),
        messages_deleted: Stats::get(&stats.messages_deleted),
        messages_dead_lettered: Stats::get(&stats.messages_dead_lettered),
        messages_released: Stats::get(&stats.messages_released),
        elapsed,
        receive_failing: drained.receive_failing,
    };
    tracing::info!(
        reason = ?summary.reason,
        processed = summary.processed,
        failed = summary.failed,
        retried = summary.retried,
        bytes_in = summary.bytes_in,
        bytes_out = summary.bytes_out,
        messages_deleted = summary.messages_deleted,
        messages_dead_lettered = summary.messages_dead_lettered,
        messages_released = summary.messages_released,
        elapsed_s = (summary.elapsed.as_secs_f64() * 100.0).round() / 100.0,
        images_per_s = (summary.images_per_sec() * 10.0).round() / 10.0,
        "qp work done: {} processed, {} failed, {} retried, {} KiB in, {} KiB out, {:.1} images/s",
        summary.processed,
        summary.failed,
        summary.retried,
        summary.bytes_in / 1024,
        summary.bytes_out / 1024,
        summary.images_per_sec()
    );
    summary
}
