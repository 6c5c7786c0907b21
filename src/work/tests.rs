//! The worker's ack/retry/DLQ/shutdown/heartbeat logic against in-memory fakes of the seam
//! traits (real time, short durations; the image core runs for real on fixture JPEGs).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::aws::s3::{Fetched, PutRequest, S3Error, S3ErrorKind};
use crate::aws::sqs::{EntryFailure, Message, QueueError, Receipt};
use crate::cli::{Cli, Command};
use clap::Parser;

fn good_jpeg() -> Vec<u8> {
    include_bytes!("../../tests/fixtures/baseline_420.jpg").to_vec()
}

#[derive(Default)]
struct FakeStore {
    objects: Mutex<HashMap<(String, String), Vec<u8>>>,
    puts: Mutex<Vec<PutRequest>>,
    /// GET failures by key.
    fail_get: Mutex<HashMap<String, S3ErrorKind>>,
    get_delay: Duration,
}

impl FakeStore {
    fn with(objects: &[(&str, Vec<u8>)]) -> FakeStore {
        let s = FakeStore::default();
        for (k, v) in objects {
            s.objects
                .lock()
                .unwrap()
                .insert(("src".into(), k.to_string()), v.clone());
        }
        s
    }
}

impl ObjectStore for FakeStore {
    async fn get(&self, bucket: &str, key: &str, _max: u64) -> Result<Fetched, S3Error> {
        tokio::time::sleep(self.get_delay).await;
        if let Some(kind) = self.fail_get.lock().unwrap().get(key) {
            return Err(S3Error {
                kind: *kind,
                message: format!("injected {kind:?}"),
            });
        }
        match self
            .objects
            .lock()
            .unwrap()
            .get(&(bucket.into(), key.into()))
        {
            Some(b) => Ok(Fetched {
                body: b.clone(),
                etag: Some("etag1".into()),
            }),
            None => Err(S3Error {
                kind: S3ErrorKind::NotFound,
                message: "NoSuchKey".into(),
            }),
        }
    }

    async fn put(&self, req: PutRequest) -> Result<(), S3Error> {
        self.puts.lock().unwrap().push(req);
        Ok(())
    }
}

/// A message sent (to the DLQ): body and attributes.
type Sent = (String, Vec<(&'static str, String)>);

#[derive(Default)]
struct FakeQueue {
    visible: Mutex<VecDeque<Message>>,
    deleted: Mutex<Vec<String>>,
    /// (message id, seconds) of every visibility change.
    visibility: Mutex<Vec<(String, u32)>>,
    sent: Mutex<Vec<Sent>>,
    vt: u32,
    /// How long a receive takes before SQS hands it messages (a poll in flight).
    answer_delay: Duration,
    /// Receives dropped before they returned: cut polls, whose messages would be stranded.
    cut_polls: AtomicUsize,
}

/// Counts a receive as cut unless it returned.
struct PollGuard<'a>(&'a AtomicUsize, bool);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl FakeQueue {
    fn with_bodies(bodies: &[String]) -> FakeQueue {
        let q = FakeQueue {
            vt: 30,
            ..Default::default()
        };
        for (i, b) in bodies.iter().enumerate() {
            q.visible.lock().unwrap().push_back(Message {
                id: format!("m{i}"),
                receipt: format!("r{i}"),
                body: b.clone(),
                receive_count: 1,
            });
        }
        q
    }
    fn deleted(&self) -> Vec<String> {
        let mut d = self.deleted.lock().unwrap().clone();
        d.sort();
        d
    }
    fn released(&self) -> Vec<String> {
        let mut r: Vec<String> = self
            .visibility
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == 0)
            .map(|(id, _)| id.clone())
            .collect();
        r.sort();
        r
    }
}

impl Queue for FakeQueue {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        _visibility: Option<u32>,
    ) -> Result<Vec<Message>, QueueError> {
        let mut guard = PollGuard(&self.cut_polls, false);
        tokio::time::sleep(self.answer_delay).await;
        let got: Vec<Message> = {
            let mut v = self.visible.lock().unwrap();
            let n = v.len().min(max);
            v.drain(..n).collect()
        };
        if got.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
        }
        guard.1 = true;
        Ok(got)
    }

    async fn delete_batch(&self, entries: &[Receipt]) -> Result<Vec<EntryFailure>, QueueError> {
        assert!(entries.len() <= MAX_BATCH);
        self.deleted
            .lock()
            .unwrap()
            .extend(entries.iter().map(|r| r.id.clone()));
        Ok(vec![])
    }

    async fn change_visibility_batch(
        &self,
        entries: &[Receipt],
        secs: u32,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        assert!(entries.len() <= MAX_BATCH);
        self.visibility
            .lock()
            .unwrap()
            .extend(entries.iter().map(|r| (r.id.clone(), secs)));
        Ok(vec![])
    }

    async fn send(&self, body: &str, attrs: &[(&'static str, String)]) -> Result<(), QueueError> {
        self.sent
            .lock()
            .unwrap()
            .push((body.to_string(), attrs.to_vec()));
        Ok(())
    }

    async fn visibility_timeout(&self) -> Result<u32, QueueError> {
        Ok(self.vt)
    }
}

/// Shares one fake between the worker (which owns its queue) and the test's assertions.
struct Shared<T>(Arc<T>);

impl ObjectStore for Shared<FakeStore> {
    async fn get(&self, bucket: &str, key: &str, max: u64) -> Result<Fetched, S3Error> {
        self.0.get(bucket, key, max).await
    }
    async fn put(&self, req: PutRequest) -> Result<(), S3Error> {
        self.0.put(req).await
    }
}

impl Queue for Shared<FakeQueue> {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        v: Option<u32>,
    ) -> Result<Vec<Message>, QueueError> {
        self.0.receive(max, wait, v).await
    }
    async fn delete_batch(&self, e: &[Receipt]) -> Result<Vec<EntryFailure>, QueueError> {
        self.0.delete_batch(e).await
    }
    async fn change_visibility_batch(
        &self,
        e: &[Receipt],
        s: u32,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        self.0.change_visibility_batch(e, s).await
    }
    async fn send(&self, b: &str, a: &[(&'static str, String)]) -> Result<(), QueueError> {
        self.0.send(b, a).await
    }
    async fn visibility_timeout(&self) -> Result<u32, QueueError> {
        self.0.visibility_timeout().await
    }
}

fn s3_body(keys: &[&str]) -> String {
    let records: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({"eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "src"}, "object": {"key": k}}})
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}

fn config(extra: &[&str]) -> WorkConfig {
    let mut argv = vec![
        "qp",
        "work",
        "--queue-url",
        "https://sqs/q",
        "--dest-bucket",
        "dst",
        "--cpus",
        "2",
    ];
    if !extra.contains(&"--idle-timeout-secs") {
        argv.extend(["--idle-timeout-secs", "0"]);
    }
    argv.extend_from_slice(extra);
    let Command::Work(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    WorkConfig::from_args(args).unwrap()
}

struct Run {
    summary: Summary,
    store: Arc<FakeStore>,
    queue: Arc<FakeQueue>,
    dlq: Arc<FakeQueue>,
}

async fn run_with(
    cfg: WorkConfig,
    store: FakeStore,
    queue: FakeQueue,
    with_dlq: bool,
    shutdown: impl Future<Output = ()>,
) -> Run {
    let store = Arc::new(store);
    let queue = Arc::new(queue);
    let dlq = Arc::new(FakeQueue::default());
    let summary = run(
        cfg,
        Shared(store.clone()),
        Shared(queue.clone()),
        with_dlq.then(|| Shared(dlq.clone())),
        // Through the test harness, which captures what `println!` writes.
        Sink::new(|lines| lines.iter().for_each(|l| println!("{l}"))),
        shutdown,
    )
    .await
    .unwrap();
    Run {
        summary,
        store,
        queue,
        dlq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_messages_are_converted_and_deleted() {
    let store = FakeStore::with(&[("a/cat.jpg", good_jpeg()), ("b/cat.jpg", good_jpeg())]);
    let bodies = vec![s3_body(&["a/cat.jpg", "b/cat.jpg"]), s3_body(&[])];
    let r = drain(&["--size", "224x224,32x16"], store, &bodies, true).await;
    assert_eq!(r.summary.reason, StopReason::Idle);
    assert_eq!(r.queue.deleted(), ["m0", "m1"]);
    assert_eq!((r.summary.processed, r.summary.failed), (2, 0));
    let mut keys: Vec<String> = r
        .store
        .puts
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.key.clone())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "processed/224x224/a/cat.jpg",
            "processed/224x224/b/cat.jpg",
            "processed/32x16/a/cat.jpg",
            "processed/32x16/b/cat.jpg"
        ]
    );
    let puts = r.store.puts.lock().unwrap();
    let p = &puts[0];
    assert_eq!(p.content_type, "image/jpeg");
    assert!(p.metadata.contains(&("source-bucket", "src".into())));
    assert!(p.metadata.contains(&("source-etag", "etag1".into())));
    assert!(r.dlq.sent.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_go_to_the_dlq_with_their_reason() {
    let store = FakeStore::with(&[("good.jpg", good_jpeg()), ("bad.jpg", b"hello".to_vec())]);
    let bodies = vec![
        s3_body(&["good.jpg", "bad.jpg"]),
        s3_body(&["missing.jpg"]),
        "not json".to_string(),
        r#"{"Event":"s3:TestEvent"}"#.to_string(),
    ];
    let r = drain(&[], store, &bodies, true).await;
    assert_eq!(r.queue.deleted(), ["m0", "m1", "m2", "m3"]);
    let sent = r.dlq.sent.lock().unwrap();
    let reason = |body: &str| {
        let (_, attrs) = sent.iter().find(|(b, _)| b == body).expect("in the DLQ");
        let get = |n| attrs.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        (
            get("qp_reason"),
            attrs
                .iter()
                .find(|(k, _)| *k == "qp_key")
                .map(|a| a.1.clone()),
        )
    };
    assert_eq!(
        reason(&bodies[0]),
        ("not_image".into(), Some("bad.jpg".into()))
    );
    assert_eq!(
        reason(&bodies[1]),
        ("object_gone".into(), Some("missing.jpg".into()))
    );
    assert_eq!(reason(&bodies[2]), ("bad_body".into(), None));
    assert_eq!(sent.len(), 3);
    // The good record of the mixed message was still written.
    assert_eq!(r.store.puts.lock().unwrap().len(), 1);
    assert_eq!(r.summary.messages_dead_lettered, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dlq_permanent_and_transient_failures_stay_on_the_queue() {
    let store = FakeStore::with(&[("good.jpg", good_jpeg()), ("bad.jpg", Vec::new())]);
    store
        .fail_get
        .lock()
        .unwrap()
        .insert("throttled.jpg".into(), S3ErrorKind::Transient);
    let bodies = vec![
        s3_body(&["bad.jpg"]),
        s3_body(&["good.jpg", "throttled.jpg"]),
        s3_body(&["good.jpg"]),
    ];
    let r = drain(&[], store, &bodies, false).await;
    assert_eq!(r.queue.deleted(), ["m2"]);
    assert!(r.queue.released().is_empty(), "left, not released");
    assert_eq!(
        (r.summary.processed, r.summary.failed, r.summary.retried),
        (2, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_not_dead_lettered() {
    let store = FakeStore::with(&[("bad.jpg", Vec::new())]);
    store
        .fail_get
        .lock()
        .unwrap()
        .insert("slow.jpg".into(), S3ErrorKind::Transient);
    let bodies = vec![s3_body(&["bad.jpg", "slow.jpg"])];
    let r = drain(&[], store, &bodies, true).await;
    assert!(r.queue.deleted().is_empty());
    assert!(r.dlq.sent.lock().unwrap().is_empty());
}

/// Runs until the queue of `bodies` has been idle (no signal).
async fn drain(args: &[&str], store: FakeStore, bodies: &[String], with_dlq: bool) -> Run {
    run_with(
        config(args),
        store,
        FakeQueue::with_bodies(bodies),
        with_dlq,
        std::future::pending(),
    )
    .await
}

/// Runs with a DLQ until a signal after `after_ms`, and checks the shutdown was prompt.
async fn signalled(args: &[&str], store: FakeStore, queue: FakeQueue, after_ms: u64) -> Run {
    let started = Instant::now();
    let r = run_with(
        config(args),
        store,
        queue,
        true,
        tokio::time::sleep(Duration::from_millis(after_ms)),
    )
    .await;
    assert_eq!(r.summary.reason, StopReason::Signal);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_started_messages_and_releases_the_rest() {
    let keys: Vec<String> = (0..6).map(|i| format!("k{i}.jpg")).collect();
    let objects: Vec<(&str, Vec<u8>)> = keys.iter().map(|k| (k.as_str(), good_jpeg())).collect();
    let mut store = FakeStore::with(&objects);
    store.get_delay = Duration::from_millis(400);
    let bodies: Vec<String> = keys.iter().map(|k| s3_body(&[k])).collect();
    let r = signalled(
        &["--concurrency", "2", "--idle-timeout-secs", "60"],
        store,
        FakeQueue::with_bodies(&bodies),
        150,
    )
    .await;
    // Two were in work (concurrency 2) and finished; four had not started and went back.
    // Which two start first is the scheduler's choice (message tasks race for the slots).
    let (deleted, released) = (r.queue.deleted(), r.queue.released());
    assert_eq!(
        (deleted.len(), released.len()),
        (2, 4),
        "{deleted:?} {released:?}"
    );
    let mut all: Vec<String> = deleted.into_iter().chain(released).collect();
    all.sort();
    assert_eq!(all, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(r.summary.processed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_in_flight_at_shutdown_gives_its_messages_back() {
    // The signal comes while a poll is on its way back with messages: cutting it would strand
    // them, invisible for the whole visibility timeout. They must be released instead.
    let keys: Vec<String> = (0..3).map(|i| format!("k{i}.jpg")).collect();
    let objects: Vec<(&str, Vec<u8>)> = keys.iter().map(|k| (k.as_str(), good_jpeg())).collect();
    let bodies: Vec<String> = keys.iter().map(|k| s3_body(&[k])).collect();
    let mut queue = FakeQueue::with_bodies(&bodies);
    queue.answer_delay = Duration::from_millis(600);
    let r = signalled(
        &["--idle-timeout-secs", "60"],
        FakeStore::with(&objects),
        queue,
        100,
    )
    .await;
    assert!(r.queue.deleted().is_empty());
    assert_eq!(r.queue.released(), ["m0", "m1", "m2"]);
    assert_eq!(r.summary.processed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_deadline_releases_unfinished_work() {
    let mut store = FakeStore::with(&[("slow.jpg", good_jpeg())]);
    store.get_delay = Duration::from_secs(30);
    let started = Instant::now();
    let r = run_with(
        config(&["--shutdown-grace-secs", "1", "--idle-timeout-secs", "60"]),
        store,
        FakeQueue::with_bodies(&[s3_body(&["slow.jpg"])]),
        true,
        tokio::time::sleep(Duration::from_millis(100)),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(r.queue.deleted().is_empty());
    assert_eq!(r.queue.released(), ["m0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_extends_slow_messages() {
    let mut store = FakeStore::with(&[("slow.jpg", good_jpeg())]);
    store.get_delay = Duration::from_millis(2300);
    let r = drain(
        &["--visibility-timeout-secs", "1"],
        store,
        &[s3_body(&["slow.jpg"])],
        true,
    )
    .await;
    assert_eq!(r.queue.deleted(), ["m0"]);
    let extensions = r
        .queue
        .visibility
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, s)| id == "m0" && *s == 1)
        .count();
    // Every ~0.5 s over 2.3 s: at least 3 extensions.
    assert!(extensions >= 3, "{extensions} extensions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_waits_for_a_quiet_queue() {
    let started = Instant::now();
    let r = drain(
        &["--idle-timeout-secs", "1"],
        FakeStore::default(),
        &[],
        false,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.summary.reason, StopReason::Idle);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The exit waits for the polls to come back: a poll cut at exit could strand messages SQS
    // had just handed it, invisible for a whole visibility timeout.
    assert_eq!(r.queue.cut_polls.load(Ordering::SeqCst), 0);
}
