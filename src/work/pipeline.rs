//! One message's work: parse the body, then for each object GET, decode/resize/encode on the CPU
//! pool, PUT every output; finally decide and act (delete, dead-letter, leave).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::ack::AckOp;
use super::cpu_pool::CpuPool;
use super::decide::{
    self, Action, MessageResult, RecordOutcome, dlq_attributes, header_safe, output_key,
};
use super::metrics::{self, Counted, Stats};
use super::tracker::Tracker;
use crate::aws::s3::{Fetched, ObjectStore, PutRequest, S3Error, S3ErrorKind};
use crate::aws::sqs::{Message, Queue};
use crate::config::work::WorkConfig;
use crate::event::{self, Body, ObjectRef};
use crate::image::ResizeSpec;
use crate::metrics::Sink;
use crate::reason::FailureReason;

/// Everything a message task needs, shared.
pub struct Ctx<S, Q> {
    pub cfg: Arc<WorkConfig>,
    pub spec: Arc<ResizeSpec>,
    pub store: Arc<S>,
    pub dlq: Option<Arc<Q>>,
    /// Objects in flight (`QP_CONCURRENCY`): one permit from GET to the last PUT.
    pub io: Arc<Semaphore>,
    pub cpu: Arc<CpuPool>,
    pub stats: Arc<Stats>,
    pub tracker: Arc<Tracker>,
    pub ack: mpsc::UnboundedSender<AckOp>,
    /// Turns true at shutdown: messages not started yet are released instead.
    pub stop: watch::Receiver<bool>,
    pub queue_name: String,
    pub metrics: Sink,
}

/// Processes one message held under `token`, and acts on the result. `_slot` (the receive
/// budget) is held until the message is settled.
pub async fn handle_message<S: ObjectStore, Q: Queue>(
    ctx: Arc<Ctx<S, Q>>,
    token: u64,
    msg: Message,
    _slot: OwnedSemaphorePermit,
) {
    let result = match event::parse(&msg.body) {
        Err(e) => MessageResult::BadBody(e),
        Ok(Body::Test) => MessageResult::Test,
        Ok(Body::Objects(objects)) if objects.is_empty() => MessageResult::Records(Vec::new()),
        Ok(Body::Objects(objects)) => {
            // The start gate: a message waiting for its first object slot at shutdown has not
            // started, and goes back to the queue at once.
            let mut stop = ctx.stop.clone();
            let first = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                p = ctx.io.clone().acquire_owned() => p.ok(),
            };
            let Some(first) = first else {
                if let Some(r) = ctx.tracker.remove(token) {
                    let _ = ctx.ack.send(AckOp::Release(r));
                }
                return;
            };
            ctx.tracker.mark_started(token);
            MessageResult::Records(process_objects(&ctx, objects, first).await)
        }
    };
    settle(&ctx, token, &msg, &result).await;
}

/// Runs every object of a message (concurrently, each under its own I/O permit).
async fn process_objects<S: ObjectStore, Q: Queue>(
    ctx: &Arc<Ctx<S, Q>>,
    objects: Vec<ObjectRef>,
    first: OwnedSemaphorePermit,
) -> Vec<RecordOutcome> {
    if objects.len() == 1 {
        let obj = objects.into_iter().next().expect("one object");
        let outcome = process_object(ctx, &obj).await;
        drop(first);
        return vec![outcome];
    }
    let mut set = tokio::task::JoinSet::new();
    let mut first = Some(first);
    let n = objects.len();
    for (i, obj) in objects.into_iter().enumerate() {
        let ctx = ctx.clone();
        let permit = first.take();
        set.spawn(async move {
            let _permit = match permit {
                Some(p) => p,
                None => match ctx.io.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => {
                        return (
                            i,
                            RecordOutcome::Transient {
                                key: obj.key.clone(),
                                error: "worker shutting down".into(),
                            },
                        );
                    }
                },
            };
            (i, process_object(&ctx, &obj).await)
        });
    }
    let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; n];
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, o)) => outcomes[i] = Some(o),
            Err(e) => tracing::error!("object task failed: {e}"),
        }
    }
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| RecordOutcome::Transient {
                key: String::new(),
                error: "object task failed".into(),
            })
        })
        .collect()
}

/// GET, convert, PUT one object; logs one line and counts it.
async fn process_object<S: ObjectStore, Q: Queue>(
    ctx: &Ctx<S, Q>,
    obj: &ObjectRef,
) -> RecordOutcome {
    let started = Instant::now();
    let (outcome, bytes_in, bytes_out, outputs) = match convert(ctx, obj).await {
        Ok((bytes_in, bytes_out, outputs)) => (RecordOutcome::Done, bytes_in, bytes_out, outputs),
        Err((o, bytes_in)) => (o, bytes_in, 0, 0),
    };
    let latency = started.elapsed();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let counted = match &outcome {
        RecordOutcome::Done => {
            tracing::info!(
                bucket = %obj.bucket, key = %obj.key, outcome = "ok",
                latency_ms = (latency_ms * 10.0).round() / 10.0, bytes_in, bytes_out, outputs,
                "processed"
            );
            Counted::Ok
        }
        RecordOutcome::Permanent { reason, error, .. } => {
            tracing::warn!(
                bucket = %obj.bucket, key = %obj.key, outcome = "failed", reason = reason.as_str(),
                latency_ms = (latency_ms * 10.0).round() / 10.0, bytes_in,
                "{}/{}: {error}", obj.bucket, obj.key
            );
            Counted::Failed
        }
        RecordOutcome::Transient { error, .. } => {
            tracing::warn!(
                bucket = %obj.bucket, key = %obj.key, outcome = "retry",
                reason = FailureReason::Transient.as_str(),
                latency_ms = (latency_ms * 10.0).round() / 10.0, bytes_in,
                "{}/{}: {error}", obj.bucket, obj.key
            );
            Counted::Retried
        }
    };
    if let Some(w) = ctx.stats.record(counted, latency, bytes_in, bytes_out) {
        metrics::emit(&ctx.metrics, &ctx.queue_name, &w);
    }
    outcome
}

/// Ok: (bytes in, bytes out, outputs written). Err: the outcome and the bytes read.
async fn convert<S: ObjectStore, Q: Queue>(
    ctx: &Ctx<S, Q>,
    obj: &ObjectRef,
) -> Result<(u64, u64, usize), (RecordOutcome, u64)> {
    let fetched = fetch(ctx, obj).await.map_err(|e| (s3_outcome(obj, e), 0))?;
    let bytes_in = fetched.body.len() as u64;
    let outputs = ctx
        .cpu
        .process(fetched.body, ctx.spec.clone())
        .await
        .map_err(|e| {
            (
                RecordOutcome::Permanent {
                    key: obj.key.clone(),
                    reason: e.kind(),
                    error: e.to_string(),
                },
                bytes_in,
            )
        })?;
    let mut metadata = vec![
        ("source-bucket", header_safe(&obj.bucket)),
        ("source-key", header_safe(&obj.key)),
    ];
    if let Some(etag) = &fetched.etag {
        metadata.push(("source-etag", header_safe(etag)));
    }
    let mut bytes_out = 0;
    let n = outputs.len();
    for out in outputs {
        bytes_out += out.jpeg.len() as u64;
        let req = PutRequest {
            bucket: ctx.cfg.dest_bucket.clone(),
            key: output_key(&ctx.cfg.dest_prefix, &ctx.spec.sizes, out.size, &obj.key),
            body: out.jpeg,
            content_type: "image/jpeg",
            metadata: metadata.clone(),
        };
        ctx.store.put(req).await.map_err(|e| {
            (
                RecordOutcome::Transient {
                    key: obj.key.clone(),
                    error: e.message,
                },
                bytes_in,
            )
        })?;
    }
    Ok((bytes_in, bytes_out, n))
}

/// GET, trying the event's alternative spelling of the key if the first does not exist.
async fn fetch<S: ObjectStore, Q: Queue>(
    ctx: &Ctx<S, Q>,
    obj: &ObjectRef,
) -> Result<Fetched, S3Error> {
    let max = ctx.cfg.max_object_bytes;
    match ctx.store.get(&obj.bucket, &obj.key, max).await {
        Err(e) if e.kind == S3ErrorKind::NotFound => match &obj.alt_key {
            Some(alt) => ctx.store.get(&obj.bucket, alt, max).await.map_err(|_| e),
            None => Err(e),
        },
        other => other,
    }
}

fn s3_outcome(obj: &ObjectRef, e: S3Error) -> RecordOutcome {
    let reason = match e.kind {
        S3ErrorKind::NotFound => FailureReason::ObjectGone,
        S3ErrorKind::TooLarge => FailureReason::ObjectTooLarge,
        S3ErrorKind::Archived => FailureReason::ObjectArchived,
        S3ErrorKind::Transient => {
            return RecordOutcome::Transient {
                key: obj.key.clone(),
                error: e.message,
            };
        }
    };
    RecordOutcome::Permanent {
        key: obj.key.clone(),
        reason,
        error: e.message,
    }
}

/// Decides and acts: delete, dead-letter then delete, or leave.
async fn settle<S: ObjectStore, Q: Queue>(
    ctx: &Ctx<S, Q>,
    token: u64,
    msg: &Message,
    result: &MessageResult,
) {
    use std::sync::atomic::Ordering;
    let action = decide::decide(result, ctx.dlq.is_some());
    match action {
        Action::Delete => {
            if let Some(r) = ctx.tracker.remove(token) {
                let _ = ctx.ack.send(AckOp::Delete(r));
            }
        }
        Action::DeadLetter(failure) => {
            let dlq = ctx.dlq.as_ref().expect("DeadLetter only with a DLQ");
            let attrs = dlq_attributes(&failure, &msg.id);
            let sent = dlq.send(&msg.body, &attrs).await;
            // Whatever happened, stop the heartbeat: either it is deleted now, or it must come
            // back after its visibility timeout.
            let receipt = ctx.tracker.remove(token);
            match sent {
                Ok(()) => {
                    tracing::warn!(
                        message_id = %msg.id, reason = failure.reason.as_str(),
                        key = failure.key.as_deref().unwrap_or(""), failed_records = failure.failed,
                        "dead-lettered: {}", failure.error
                    );
                    ctx.stats
                        .messages_dead_lettered
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = receipt {
                        let _ = ctx.ack.send(AckOp::Delete(r));
                    }
                }
                Err(e) => tracing::error!(
                    message_id = %msg.id, reason = failure.reason.as_str(),
                    "could not send to the DLQ, the message will come back: {e}"
                ),
            }
        }
        Action::Leave { failure, permanent } => {
            ctx.tracker.remove(token);
            if permanent {
                tracing::warn!(
                    message_id = %msg.id, reason = failure.reason.as_str(), receive_count = msg.receive_count,
                    key = failure.key.as_deref().unwrap_or(""),
                    "permanent failure and no QP_DLQ_URL: left for the queue's redrive policy: {}",
                    failure.error
                );
            } else {
                tracing::info!(
                    message_id = %msg.id, receive_count = msg.receive_count,
                    key = failure.key.as_deref().unwrap_or(""),
                    "left on the queue to retry: {}", failure.error
                );
            }
        }
    }
}
