//! The messages this worker holds, and the heartbeat that keeps them invisible while in work.
//!
//! Every received message is registered under a token (not its message id: SQS may deliver the
//! same message twice, with two receipt handles). The heartbeat extends the visibility of any
//! message with half of its visibility timeout or less left, repeatedly, until the message is
//! removed (acknowledged, left, or released).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::decide::heartbeat_due;
use crate::aws::sqs::{MAX_BATCH, Queue, Receipt};

#[derive(Debug)]
struct Held {
    receipt: Receipt,
    /// When the message becomes visible again unless extended.
    visible_at: Instant,
    /// Work on it has begun (shutdown releases only messages not started).
    started: bool,
    /// The queue refused an extension (receipt expired): stop trying.
    lost: bool,
}

/// The held messages. A std Mutex: every critical section is a few map operations.
#[derive(Debug, Default)]
pub struct Tracker {
    held: Mutex<HashMap<u64, Held>>,
    next: AtomicU64,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a message received at `now` with visibility timeout `vt`; returns its token.
    pub fn add(&self, receipt: Receipt, now: Instant, vt: Duration) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            token,
            Held {
                receipt,
                visible_at: now + vt,
                started: false,
                lost: false,
            },
        );
        token
    }

    pub fn mark_started(&self, token: u64) {
        if let Some(h) = self.lock().get_mut(&token) {
            h.started = true;
        }
    }

    /// Stops tracking a message, returning its receipt (None if already removed).
    pub fn remove(&self, token: u64) -> Option<Receipt> {
        self.lock().remove(&token).map(|h| h.receipt)
    }

    /// Removes and returns every message still held (shutdown deadline).
    pub fn drain(&self) -> Vec<Receipt> {
        self.lock().drain().map(|(_, h)| h.receipt).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages due for an extension at `now`.
    fn due(&self, now: Instant, vt: Duration) -> Vec<(u64, Receipt)> {
        self.lock()
            .iter()
            .filter(|(_, h)| !h.lost && heartbeat_due(h.visible_at.into_std(), now.into_std(), vt))
            .map(|(t, h)| (*t, h.receipt.clone()))
            .collect()
    }

    fn extended(&self, token: u64, visible_at: Instant) {
        if let Some(h) = self.lock().get_mut(&token) {
            h.visible_at = visible_at;
        }
    }

    fn lost(&self, token: u64) {
        if let Some(h) = self.lock().get_mut(&token) {
            h.lost = true;
        }
    }
}

/// How often the heartbeat looks: a quarter of the visibility timeout, between 100 ms and 5 s.
pub fn tick(vt: Duration) -> Duration {
    (vt / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Extends due messages until `stop` turns true.
pub async fn heartbeat<Q: Queue>(
    queue: Arc<Q>,
    tracker: Arc<Tracker>,
    vt: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let secs = vt.as_secs().max(1) as u32;
    let mut ticker = tokio::time::interval(tick(vt));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let due = tracker.due(Instant::now(), vt);
        for chunk in due.chunks(MAX_BATCH) {
            let receipts: Vec<Receipt> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let sent = Instant::now();
            match queue.change_visibility_batch(&receipts, secs).await {
                Ok(failures) => {
                    for (token, r) in chunk {
                        match failures.iter().find(|f| f.id == r.id) {
                            None => tracker.extended(*token, sent + vt),
                            Some(f) => {
                                tracing::warn!(
                                    message_id = %r.id, code = %f.code,
                                    "could not extend visibility: {}", f.message
                                );
                                tracker.lost(*token);
                            }
                        }
                    }
                    tracing::debug!(extended = chunk.len(), "heartbeat");
                }
                // Tried again on the next tick.
                Err(e) => tracing::warn!("heartbeat: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(t: &Tracker, token: u64) -> Option<bool> {
        t.lock().get(&token).map(|h| h.started)
    }

    #[tokio::test]
    async fn tracker_registers_and_releases() {
        let t = Tracker::default();
        let r = |id: &str| Receipt {
            id: id.into(),
            handle: format!("h-{id}"),
        };
        let now = Instant::now();
        let a = t.add(r("a"), now, Duration::from_secs(10));
        let b = t.add(r("a"), now, Duration::from_secs(10));
        assert_ne!(a, b, "the same message twice gets two tokens");
        t.mark_started(a);
        assert_eq!(started(&t, a), Some(true));
        assert_eq!(started(&t, b), Some(false));
        assert_eq!(t.remove(a).unwrap().id, "a");
        assert!(t.remove(a).is_none());
        assert_eq!(t.drain().len(), 1);
        assert!(t.is_empty());
        assert_eq!(tick(Duration::from_secs(1)), Duration::from_millis(250));
        assert_eq!(tick(Duration::from_secs(3600)), Duration::from_secs(5));
    }
}
