//! Batches of 10 on their way to SQS: several in flight, paced by `--max-per-sec`, every entry's
//! result checked, refused entries sent again, and what still failed reported by key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use crate::aws::sqs::MAX_BATCH;
use crate::aws::sqs_batch::BatchSender;

/// Batches in flight at once: SQS answers in tens of milliseconds, so one at a time would wait
/// on the network most of the time.
pub const IN_FLIGHT: usize = 8;
/// Sends of one entry before it is reported as failed.
pub const ATTEMPTS: u32 = 5;
/// First pause before sending refused entries again; doubles each time.
pub const BACKOFF: Duration = Duration::from_millis(200);
/// Failed keys named in the summary (all are logged).
pub const FAILED_SHOWN: usize = 100;

/// Spreads sends so that no more than `max_per_sec` messages leave per second, on average over
/// each batch (no burst allowance: an idle minute does not buy a burst afterwards).
#[derive(Debug)]
pub struct Pacer {
    per_message: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(max_per_sec: Option<u32>) -> Pacer {
        Pacer {
            per_message: max_per_sec.map(|n| Duration::from_secs(1) / n.max(1)),
            next: None,
        }
    }

    /// Reserves `n` messages' worth of time; returns how long to wait before sending them.
    pub fn reserve(&mut self, n: usize, now: Instant) -> Duration {
        let Some(per) = self.per_message else {
            return Duration::ZERO;
        };
        let start = self.next.map_or(now, |t| t.max(now));
        self.next = Some(start + per * n as u32);
        start - now
    }
}

/// An object that could not be sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FailedKey {
    pub bucket: String,
    pub key: String,
    pub error: String,
}

/// What the sender did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: u64,
    pub failed: u64,
    /// Entry sends beyond the first (each refused entry sent again counts once).
    pub retried: u64,
    pub failed_keys: Vec<FailedKey>,
}

impl Sent {
    fn add(&mut self, other: Sent) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.retried += other.retried;
        for f in other.failed_keys {
            tracing::error!(bucket = %f.bucket, key = %f.key, "not sent: {}", f.error);
            if self.failed_keys.len() < FAILED_SHOWN {
                self.failed_keys.push(f);
            }
        }
    }
}

/// One message to send: which object (for reports) and its body.
#[derive(Clone, Debug)]
pub struct Entry {
    pub bucket: Arc<str>,
    pub key: String,
    pub body: String,
}

/// Collects entries into batches of 10 and keeps up to [`IN_FLIGHT`] of them on the wire.
pub struct Sender<S> {
    queue: Arc<S>,
    batch: Vec<Entry>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<Sent>,
    /// The objects of each batch in flight, by task: what a task that panicked leaves unsent.
    in_flight: HashMap<Id, Vec<(Arc<str>, String)>>,
    pacer: Pacer,
    backoff: Duration,
    done: Sent,
    /// Called with the totals so far after each batch settles (the progress bar).
    on_progress: Box<dyn FnMut(&Sent) + Send>,
}

impl<S: BatchSender> Sender<S> {
    pub fn new(queue: Arc<S>, max_per_sec: Option<u32>) -> Sender<S> {
        Sender {
            queue,
            batch: Vec::with_capacity(MAX_BATCH),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            tasks: JoinSet::new(),
            in_flight: HashMap::new(),
            pacer: Pacer::new(max_per_sec),
            backoff: BACKOFF,
            done: Sent::default(),
            on_progress: Box::new(|_| {}),
        }
    }

    pub fn on_progress(mut self, f: impl FnMut(&Sent) + Send + 'static) -> Sender<S> {
        self.on_progress = Box::new(f);
        self
    }

    /// The first pause before a retry (tests shorten it).
    pub fn backoff(mut self, first: Duration) -> Sender<S> {
        self.backoff = first;
        self
    }

    /// Queues one entry; waits when [`IN_FLIGHT`] batches are already on the wire.
    pub async fn push(&mut self, entry: Entry) {
        self.batch.push(entry);
        if self.batch.len() == MAX_BATCH {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(MAX_BATCH));
        let wait = self.pacer.reserve(batch.len(), Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // Reap what finished meanwhile, so the totals (and the bar) keep up.
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            self.settle(joined);
        }
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let objects = batch
            .iter()
            .map(|e| (e.bucket.clone(), e.key.clone()))
            .collect();
        let (queue, backoff) = (self.queue.clone(), self.backoff);
        let task = self.tasks.spawn(async move {
            let outcome = send_with_retries(queue.as_ref(), batch, backoff).await;
            drop(slot);
            outcome
        });
        self.in_flight.insert(task.id(), objects);
    }

    fn settle(&mut self, joined: Result<(Id, Sent), JoinError>) {
        match joined {
            Ok((id, sent)) => {
                self.in_flight.remove(&id);
                self.done.add(sent);
            }
            // A panic in a send task is a bug, but its batch must not vanish from the counts:
            // every entry of it is reported failed, by key (it may or may not have reached SQS).
            Err(e) => {
                let objects = self.in_flight.remove(&e.id()).unwrap_or_default();
                let error = format!("qp's send task failed ({e}); sent or not is unknown");
                self.done.add(Sent {
                    failed: objects.len() as u64,
                    failed_keys: objects
                        .into_iter()
                        .map(|(bucket, key)| FailedKey {
                            bucket: bucket.to_string(),
                            key,
                            error: error.clone(),
                        })
                        .collect(),
                    ..Sent::default()
                });
            }
        }
        (self.on_progress)(&self.done);
    }

    /// Sends the last partial batch and waits for every batch in flight.
    pub async fn finish(mut self) -> Sent {
        self.flush().await;
        while let Some(joined) = self.tasks.join_next_with_id().await {
            self.settle(joined);
        }
        self.done
    }
}

/// One batch: send, then send the refused entries again (up to [`ATTEMPTS`] in all), unless SQS
/// says the entry itself is at fault.
async fn send_with_retries<S: BatchSender>(
    queue: &S,
    batch: Vec<Entry>,
    mut backoff: Duration,
) -> Sent {
    let mut out = Sent::default();
    let mut pending = batch;
    for attempt in 1..=ATTEMPTS {
        let bodies: Vec<String> = pending.iter().map(|e| e.body.clone()).collect();
        let (retry, last_error): (Vec<(Entry, String)>, _) = match queue.send_batch(&bodies).await {
            Ok(failures) => {
                let mut retry = Vec::new();
                let mut refused: Vec<Option<(String, bool)>> = vec![None; pending.len()];
                for f in failures {
                    if let Some(slot) = refused.get_mut(f.index) {
                        *slot = Some((format!("{}: {}", f.code, f.message), f.sender_fault));
                    }
                }
                for (entry, refusal) in pending.into_iter().zip(refused) {
                    match refusal {
                        None => out.sent += 1,
                        Some((error, true)) => {
                            out.failed += 1;
                            out.failed_keys.push(failed(&entry, error));
                        }
                        Some((error, false)) => retry.push((entry, error)),
                    }
                }
                (retry, None)
            }
            Err(e) => {
                let e = e.to_string();
                (
                    pending.into_iter().map(|p| (p, e.clone())).collect(),
                    Some(e),
                )
            }
        };
        if retry.is_empty() {
            return out;
        }
        if attempt == ATTEMPTS {
            for (entry, error) in retry {
                out.failed += 1;
                out.failed_keys.push(failed(
                    &entry,
                    format!("{error} (after {ATTEMPTS} attempts)"),
                ));
            }
            return out;
        }
        tracing::warn!(
            entries = retry.len(),
            attempt,
            "SQS refused {} entries, sending them again in {} ms: {}",
            retry.len(),
            backoff.as_millis(),
            last_error.as_deref().unwrap_or(&retry[0].1)
        );
        out.retried += retry.len() as u64;
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        pending = retry.into_iter().map(|(e, _)| e).collect();
    }
    out
}

fn failed(entry: &Entry, error: String) -> FailedKey {
    FailedKey {
        bucket: entry.bucket.to_string(),
        key: entry.key.clone(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::sqs::QueueError;
    use crate::aws::sqs_batch::SendFailure;
    use std::sync::Mutex;

    /// Refuses the entries whose body is in `refuse` (as often as its count says), fails whole
    /// calls while `call_errors` lasts, and records what it accepted.
    #[derive(Default)]
    struct FakeQueue {
        refuse: Mutex<Vec<(String, u32, bool)>>,
        call_errors: Mutex<u32>,
        accepted: Mutex<Vec<String>>,
        calls: Mutex<u32>,
    }

    impl BatchSender for FakeQueue {
        async fn send_batch(&self, bodies: &[String]) -> Result<Vec<SendFailure>, QueueError> {
            *self.calls.lock().unwrap() += 1;
            assert!(bodies.len() <= MAX_BATCH);
            {
                let mut errors = self.call_errors.lock().unwrap();
                if *errors > 0 {
                    *errors -= 1;
                    return Err(QueueError::Call {
                        action: "sending to",
                        url: "q".into(),
                        message: "connection reset".into(),
                    });
                }
            }
            let mut failures = Vec::new();
            let mut refuse = self.refuse.lock().unwrap();
            for (i, body) in bodies.iter().enumerate() {
                match refuse.iter_mut().find(|(b, n, _)| b == body && *n > 0) {
                    Some((_, n, sender_fault)) => {
                        *n -= 1;
                        failures.push(SendFailure {
                            index: i,
                            code: "InternalError".into(),
                            message: "injected".into(),
                            sender_fault: *sender_fault,
                        });
                    }
                    None => self.accepted.lock().unwrap().push(body.clone()),
                }
            }
            Ok(failures)
        }
    }

    /// Panics on the batch holding `body007`, as a bug in the send path would.
    struct PanickingQueue;

    impl BatchSender for PanickingQueue {
        async fn send_batch(&self, bodies: &[String]) -> Result<Vec<SendFailure>, QueueError> {
            assert!(!bodies.iter().any(|b| b == "body007"), "injected bug");
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_batch_whose_task_panics_is_reported_failed_by_key() {
        let mut sender = Sender::new(Arc::new(PanickingQueue), None);
        for e in entries(25) {
            sender.push(e).await;
        }
        let sent = sender.finish().await;
        assert_eq!((sent.sent, sent.failed), (15, 10));
        let keys: Vec<&str> = sent.failed_keys.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            (0..10).map(|i| format!("k{i:03}")).collect::<Vec<_>>()
        );
        assert!(
            sent.failed_keys[0].error.contains("injected bug"),
            "{:?}",
            sent.failed_keys[0]
        );
    }

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                bucket: Arc::from("b"),
                key: format!("k{i:03}"),
                body: format!("body{i:03}"),
            })
            .collect()
    }

    async fn send_all(queue: Arc<FakeQueue>, n: usize) -> Sent {
        let mut sender = Sender::new(queue, None).backoff(Duration::from_millis(1));
        for e in entries(n) {
            sender.push(e).await;
        }
        sender.finish().await
    }

    #[tokio::test]
    async fn every_entry_once_in_batches_of_ten() {
        let q = Arc::new(FakeQueue::default());
        let sent = send_all(q.clone(), 95).await;
        assert_eq!((sent.sent, sent.failed, sent.retried), (95, 0, 0));
        assert_eq!(*q.calls.lock().unwrap(), 10);
        let mut accepted = q.accepted.lock().unwrap().clone();
        accepted.sort();
        assert_eq!(
            accepted,
            entries(95).into_iter().map(|e| e.body).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn refused_entries_are_retried_then_reported() {
        let q = Arc::new(FakeQueue::default());
        *q.refuse.lock().unwrap() = vec![
            ("body003".into(), 2, false),        // passes on the third attempt
            ("body017".into(), u32::MAX, false), // never passes
            ("body020".into(), 1, true),         // the sender's fault: never retried
        ];
        let sent = send_all(q.clone(), 25).await;
        assert_eq!(sent.sent, 23);
        assert_eq!(sent.failed, 2);
        assert_eq!(sent.retried, 2 + u64::from(ATTEMPTS - 1));
        let keys: Vec<&str> = sent.failed_keys.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&"k017") && keys.contains(&"k020"), "{keys:?}");
        let k17 = sent.failed_keys.iter().find(|f| f.key == "k017").unwrap();
        assert!(k17.error.contains("InternalError") && k17.error.contains("5 attempts"));
        let accepted = q.accepted.lock().unwrap();
        assert_eq!(accepted.iter().filter(|b| *b == "body003").count(), 1);
        assert!(!accepted.contains(&"body017".to_string()));
    }

    #[tokio::test]
    async fn a_failed_call_is_sent_again_whole() {
        let q = Arc::new(FakeQueue::default());
        *q.call_errors.lock().unwrap() = 2;
        let sent = send_all(q.clone(), 10).await;
        assert_eq!((sent.sent, sent.failed, sent.retried), (10, 0, 20));
        *q.call_errors.lock().unwrap() = u32::MAX;
        let sent = send_all(q, 3).await;
        assert_eq!((sent.sent, sent.failed), (0, 3));
        assert!(sent.failed_keys[0].error.contains("connection reset"));
    }

    #[test]
    fn pacing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        assert_eq!(p.reserve(10, t0), Duration::ZERO);
        assert_eq!(p.reserve(10, t0), Duration::ZERO);
        let mut p = Pacer::new(Some(20));
        assert_eq!(p.reserve(10, t0), Duration::ZERO);
        assert_eq!(p.reserve(10, t0), Duration::from_millis(500));
        assert_eq!(p.reserve(5, t0), Duration::from_millis(1000));
        // After a pause no credit is saved up.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.reserve(10, later), Duration::ZERO);
        assert_eq!(p.reserve(10, later), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn max_per_sec_holds() {
        let q = Arc::new(FakeQueue::default());
        let started = Instant::now();
        let mut sender = Sender::new(q, Some(1000));
        for e in entries(200) {
            sender.push(e).await;
        }
        let sent = sender.finish().await;
        assert_eq!(sent.sent, 200);
        // 200 messages at 1000/s: the last batch leaves at 190 ms.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
