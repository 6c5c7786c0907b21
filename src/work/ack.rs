//! Acknowledgements in batches: deletes (done, or dead-lettered) and releases (visibility 0 for
//! messages given back at shutdown). Message tasks send [`AckOp`]s; one task groups them into
//! batch calls of up to ten, waiting at most [`LINGER`] for a batch to fill, and checks every
//! entry's result. A failed delete is logged: the message comes back and is processed again,
//! harmlessly (outputs are deterministic).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::metrics::Stats;
use crate::aws::sqs::{MAX_BATCH, Queue, Receipt};

/// Longest wait for a batch to fill before sending it anyway.
pub const LINGER: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckOp {
    Delete(Receipt),
    Release(Receipt),
}

/// Runs until every sender is dropped, then flushes what is left.
pub async fn acker<Q: Queue>(
    queue: Arc<Q>,
    stats: Arc<Stats>,
    mut rx: mpsc::UnboundedReceiver<AckOp>,
) {
    let mut deletes: Vec<Receipt> = Vec::new();
    let mut releases: Vec<Receipt> = Vec::new();
    let mut open = true;
    while open {
        // Wait for a first operation, then give the batch LINGER to fill.
        match rx.recv().await {
            Some(op) => push(op, &mut deletes, &mut releases),
            None => open = false,
        }
        let deadline = Instant::now() + LINGER;
        while open && deletes.len() < MAX_BATCH && releases.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(op)) => push(op, &mut deletes, &mut releases),
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        while !deletes.is_empty() {
            let n = deletes.len().min(MAX_BATCH);
            let batch: Vec<Receipt> = deletes.drain(..n).collect();
            delete(&*queue, &stats, &batch).await;
        }
        while !releases.is_empty() {
            let n = releases.len().min(MAX_BATCH);
            let batch: Vec<Receipt> = releases.drain(..n).collect();
            release(&*queue, &stats, &batch).await;
        }
    }
}

fn push(op: AckOp, deletes: &mut Vec<Receipt>, releases: &mut Vec<Receipt>) {
    match op {
        AckOp::Delete(r) => deletes.push(r),
        AckOp::Release(r) => releases.push(r),
    }
}

async fn delete<Q: Queue>(queue: &Q, stats: &Stats, batch: &[Receipt]) {
    match queue.delete_batch(batch).await {
        Ok(failures) => {
            for f in &failures {
                tracing::warn!(message_id = %f.id, code = %f.code,
                    "delete failed, the message will be processed again: {}", f.message);
            }
            stats
                .messages_deleted
                .fetch_add((batch.len() - failures.len()) as u64, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(
            messages = batch.len(),
            "delete failed, the messages will be processed again: {e}"
        ),
    }
}

async fn release<Q: Queue>(queue: &Q, stats: &Stats, batch: &[Receipt]) {
    match queue.change_visibility_batch(batch, 0).await {
        Ok(failures) => {
            for f in &failures {
                tracing::warn!(message_id = %f.id, code = %f.code,
                    "release failed, the message returns after its visibility timeout: {}", f.message);
            }
            stats
                .messages_released
                .fetch_add((batch.len() - failures.len()) as u64, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(
            messages = batch.len(),
            "release failed, the messages return after their visibility timeout: {e}"
        ),
    }
}
