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
pub mod decide;
pub mod metrics;
mod pipeline;
#[cfg(test)]
mod tests;
mod tracker;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::aws::Clients;
use crate::aws::s3::{ObjectStore, S3Store};
use crate::aws::sqs::{MAX_BATCH, Message, Queue, Receipt, SqsQueue};
use crate::cli::WorkArgs;
use crate::config::work::WorkConfig;
use ack::AckOp;
use decide::{IdleClock, poll_wait};
use metrics::Stats;
use pipeline::{CpuPool, Ctx};
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
        run(cfg, store, queue, dlq, crate::shutdown::signal()).await
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

/// State shared by the receive loops.
struct Receiving<Q> {
    queue: Arc<Q>,
    tracker: Arc<Tracker>,
    /// Messages held at once (receive budget); a receive takes ten before it polls.
    slots: Arc<Semaphore>,
    idle: Mutex<IdleClock>,
    idle_timeout: Duration,
    wait: Duration,
    vt: Duration,
    receive_vt: Option<u32>,
    receive_failing: std::sync::atomic::AtomicBool,
    /// Turns true at shutdown: no new poll starts, and what a poll in flight returns is left in
    /// the tracker, undispatched, for the final release.
    stop: watch::Receiver<bool>,
}

/// How long shutdown waits for receives in flight. One that already has messages answers in
/// milliseconds; one still waiting has none, and is cut.
const RECEIVE_DRAIN: Duration = Duration::from_secs(3);

type Batch = Vec<(u64, Message, OwnedSemaphorePermit)>;

/// Drains the queue until it has been idle for `cfg.idle_timeout` or `shutdown` resolves.
pub async fn run<S: ObjectStore, Q: Queue>(
    cfg: WorkConfig,
    store: S,
    queue: Q,
    dlq: Option<Q>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let queue = Arc::new(queue);
    let (vt_secs, receive_vt) = match cfg.visibility_timeout {
        Some(v) => (v, Some(v)),
        None => {
            let v = queue
                .visibility_timeout()
                .await
                .context("reading the queue's visibility timeout (is QP_QUEUE_URL right?)")?;
            if v == 0 {
                tracing::warn!(
                    "the queue's visibility timeout is 0: receiving with {FALLBACK_VISIBILITY_SECS} s"
                );
                (FALLBACK_VISIBILITY_SECS, Some(FALLBACK_VISIBILITY_SECS))
            } else {
                (v, None)
            }
        }
    };
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let (beat_stop_tx, beat_stop_rx) = watch::channel(false);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let acker = tokio::spawn(ack::acker(queue.clone(), stats.clone(), ack_rx));
    let heartbeat = tokio::spawn(tracker::heartbeat(
        queue.clone(),
        tracker.clone(),
        vt,
        beat_stop_rx,
    ));
    let queue_name = metrics::queue_name(&cfg.queue_url).to_string();
    let ctx = Arc::new(Ctx {
        spec: Arc::new(cfg.spec.clone()),
        cfg: cfg.clone(),
        store: Arc::new(store),
        dlq: dlq.map(Arc::new),
        io: Arc::new(Semaphore::new(cfg.concurrency)),
        cpu: Arc::new(CpuPool::new(cfg.cpus)?),
        stats: stats.clone(),
        tracker: tracker.clone(),
        ack: ack_tx.clone(),
        stop: stop_rx.clone(),
        queue_name: queue_name.clone(),
    });
    let rx_state = Arc::new(Receiving {
        queue: queue.clone(),
        tracker: tracker.clone(),
        slots: Arc::new(Semaphore::new(cfg.concurrency.max(MAX_BATCH) + MAX_BATCH)),
        idle: Mutex::new(IdleClock::default()),
        idle_timeout: cfg.idle_timeout,
        wait: poll_wait(cfg.idle_timeout),
        vt,
        receive_vt,
        receive_failing: Default::default(),
        stop: stop_rx.clone(),
    });

    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(receivers);
    let mut receiving = JoinSet::new();
    for _ in 0..receivers {
        receiving.spawn(receive_loop(rx_state.clone(), batch_tx.clone()));
    }
    drop(batch_tx);

    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut emf_tick = tokio::time::interval(metrics::EMF_INTERVAL);
    emf_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    let reason = loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break StopReason::Signal,
            Some(batch) = batch_rx.recv() => {
                for (token, msg, slot) in batch {
                    tasks.spawn(pipeline::handle_message(ctx.clone(), token, msg, slot));
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!("message task failed: {e}");
                }
                if receiving.is_empty() && tasks.is_empty() && tracker.is_empty() {
                    break StopReason::Idle;
                }
            }
            // A receive loop ends by itself only once the queue has been idle for the timeout.
            Some(_) = receiving.join_next(), if !receiving.is_empty() => {
                if receiving.is_empty() && tasks.is_empty() && tracker.is_empty() {
                    break StopReason::Idle;
                }
            }
            _ = emf_tick.tick() => {
                if let Some(w) = stats.take_window() {
                    metrics::emit(&queue_name, &w);
                }
            }
        }
    };

    // Stop receiving. At idle every receive loop has already ended after an empty poll. At a
    // signal, receives in flight are let finish (briefly) rather than cut: SQS may already have
    // handed one its messages, which would then stay invisible for the whole visibility timeout;
    // what they return stays in the tracker and is released below.
    let _ = stop_tx.send(true);
    let all_returned = reason == StopReason::Signal
        && tokio::time::timeout(RECEIVE_DRAIN.min(cfg.shutdown_grace), async {
            while receiving.join_next().await.is_some() {}
        })
        .await
        .is_ok();
    if !all_returned {
        receiving.abort_all();
        while receiving.join_next().await.is_some() {}
    }
    // Batches received but never dispatched: give them back at once.
    batch_rx.close();
    while let Ok(batch) = batch_rx.try_recv() {
        for (token, _, _) in batch {
            if let Some(r) = tracker.remove(token) {
                let _ = ack_tx.send(AckOp::Release(r));
            }
        }
    }
    if reason == StopReason::Signal {
        tracing::info!(
            in_flight = tracker.len(),
            grace_s = cfg.shutdown_grace.as_secs(),
            "shutting down: finishing started messages, releasing the others"
        );
    }
    // Started messages finish within the grace period (messages not started release themselves
    // as soon as they see the stop).
    let deadline = Instant::now() + cfg.shutdown_grace;
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
    // Normally empty; after the deadline (or a receive cut between polling and dispatch) these
    // are messages nobody will finish: release them for another worker.
    let left = tracker.drain();
    if !left.is_empty() {
        tracing::warn!(messages = left.len(), "releasing unfinished messages");
        for r in left {
            let _ = ack_tx.send(AckOp::Release(r));
        }
    }
    let _ = beat_stop_tx.send(true);
    let _ = heartbeat.await;
    // The acker ends when the last sender is gone, after flushing.
    drop(ack_tx);
    drop(ctx);
    if tokio::time::timeout(Duration::from_secs(15), acker)
        .await
        .is_err()
    {
        tracing::warn!("acknowledgements still pending at exit: those messages will come back");
    }
    if let Some(w) = stats.take_window() {
        metrics::emit(&queue_name, &w);
    }

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
        elapsed: started.elapsed(),
        receive_failing: rx_state
            .receive_failing
            .load(std::sync::atomic::Ordering::Relaxed),
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
    Ok(summary)
}

/// One receive loop: take a batch's worth of slots, long-poll, register what came, hand it over.
async fn receive_loop<Q: Queue>(st: Arc<Receiving<Q>>, out: mpsc::Sender<Batch>) {
    use std::sync::atomic::Ordering;
    let mut backoff = Duration::from_millis(500);
    let mut stop = st.stop.clone();
    loop {
        let permits = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            p = st.slots.clone().acquire_many_owned(MAX_BATCH as u32) => p,
        };
        let Ok(mut permits) = permits else {
            return;
        };
        let poll_started = Instant::now();
        let received = st.queue.receive(MAX_BATCH, st.wait, st.receive_vt).await;
        let now = Instant::now();
        let messages = match received {
            Ok(m) => {
                st.receive_failing.store(false, Ordering::Relaxed);
                backoff = Duration::from_millis(500);
                m
            }
            Err(e) => {
                st.receive_failing.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "receive failed, retrying in {} ms: {e}",
                    backoff.as_millis()
                );
                drop(permits);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(pipeline::RECEIVE_BACKOFF_MAX);
                // A queue that cannot be read counts as empty: the worker does not run forever.
                if st.idle.lock().unwrap_or_else(|p| p.into_inner()).on_poll(
                    false,
                    poll_started.into_std(),
                    st.tracker.len(),
                    Instant::now().into_std(),
                    st.idle_timeout,
                ) {
                    return;
                }
                continue;
            }
        };
        let mut batch = Vec::with_capacity(messages.len());
        for msg in messages {
            let receipt = Receipt {
                id: msg.id.clone(),
                handle: msg.receipt.clone(),
            };
            let token = st.tracker.add(receipt, poll_started, st.vt);
            let slot = permits.split(1).expect("a slot per message");
            batch.push((token, msg, slot));
        }
        drop(permits);
        if *stop.borrow() {
            // Shutting down: these stay in the tracker, undispatched, and are released.
            return;
        }
        let idle = st.idle.lock().unwrap_or_else(|p| p.into_inner()).on_poll(
            !batch.is_empty(),
            poll_started.into_std(),
            st.tracker.len(),
            now.into_std(),
            st.idle_timeout,
        );
        if !batch.is_empty() {
            let sent = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => false,
                r = out.send(batch) => r.is_ok(),
            };
            if !sent {
                // The dispatcher stopped: the messages are still in the tracker, and the final
                // release gives them back.
                return;
            }
        } else if idle {
            // Nothing came for the idle timeout, with nothing in work: this loop is done, with
            // no poll left in flight that could strand messages when the worker exits.
            return;
        }
    }
}
