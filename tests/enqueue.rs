//! `qp enqueue` and `qp reconcile` end to end: the real binary against a private moto server.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::faults::{EntryFaultProxy, FaultProxy};
use crate::util::{Moto, qp, queue_depth, stderr, stdout};

const SRC: &str = "photos";

/// The folders of the big corpus: spaces, `+`, `%`, unicode, deep paths, and the bucket root.
const FOLDERS: [&str; 7] = [
    "",
    "a b/",
    "c+d/",
    "100% real/",
    "x/Ünïcødé/日本/",
    "deep/1/2/3/4/5/6/7/",
    "x/y z/+/",
];

/// Key `i` of the big corpus and whether it is an image (default suffixes: .jpg, .jpeg, any case).
fn corpus_key(i: usize) -> (String, bool) {
    let folder = FOLDERS[i % FOLDERS.len()];
    let (name, image) = match i % 10 {
        0 => (format!("{i:05} photo.jpg"), true),
        1 => (format!("{i:05}+plus.JPG"), true),
        2 => (format!("{i:05}%41 pct.jpeg"), true),
        3 => (format!("{i:05} ünï 写真.Jpg"), true),
        4 => (format!("{i:05}.heic"), false),
        5 => (format!("{i:05} notes.txt"), false),
        6 => (format!("{i:05}.jpg.bak"), false),
        7 => (format!("{i:05}~(1)&x=y.jpg"), true),
        8 => (format!("{i:05} a.JPEG"), true),
        _ => (format!("{i:05}.jpg"), true),
    };
    (format!("{folder}{name}"), image)
}

/// Size of object `i` (so `bytes` is checked against something that varies).
fn corpus_size(i: usize) -> usize {
    1 + i % 13
}

async fn upload_all(s3: &aws_sdk_s3::Client, bucket: &str, objects: Vec<(String, Vec<u8>)>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, body) in objects {
        let (s3, bucket) = (s3.clone(), bucket.to_string());
        let permit = slots.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            s3.put_object()
                .bucket(&bucket)
                .key(&key)
                .body(body.into())
                .send()
                .await
                .unwrap_or_else(|e| panic!("uploading {key}: {e:?}"));
            drop(permit);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "600")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Receivers draining the queue while an enqueue runs (long polls: idle, they cost moto nothing).
const READERS: usize = 4;

/// Messages the enqueue under test may have sent that the readers have not read back yet.
const GATE: usize = 60;

/// A proxy between the enqueue under test and moto that holds each SendMessageBatch while
/// [`GATE`] messages or more are on their way (forwarded, not yet read back), for 2 s at most;
/// every other request passes untouched. moto rebuilds the queue's attributes, a walk over every
/// message not yet deleted with two clock reads per message, for each message sent and each
/// message received: a queue that grows makes the emulator's cost per message grow with it, and
/// it serves requests one thread at a time, so once the sends outnumber the receives (8 batches
/// in flight, or the listing's burst of pages at the start), the queue never shrinks again
/// (measured on a fresh moto: 1 message a second once a few thousand were queued; paced at
/// 100/s, the drain fell behind within 10 s). Held here, qp sees a slow SQS, and moto's queue
/// stays a few batches long whatever the machine's load.
///
/// It also keeps the message ids moto answered each SendMessageBatch with: what the emulator
/// acknowledged, for the test to check that its readers got every one (else a message lost
/// inside the emulator would pass for one qp never sent, or the other way round).
struct SendGate {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<String>>>,
}

impl SendGate {
    async fn start(upstream: std::net::SocketAddr, read: Arc<AtomicUsize>) -> SendGate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(tokio::sync::Mutex::new(0usize));
        let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
        let (st, acks) = (stop.clone(), acknowledged.clone());
        tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (forwarded, read, acks) = (forwarded.clone(), read.clone(), acks.clone());
                tokio::spawn(async move {
                    let _ = gate(client, upstream, forwarded, read, acks).await;
                });
            }
        });
        SendGate {
            addr,
            stop,
            acknowledged,
        }
    }
}

impl Drop for SendGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn gate(
    mut client: tokio::net::TcpStream,
    upstream: std::net::SocketAddr,
    forwarded: Arc<tokio::sync::Mutex<usize>>,
    read: Arc<AtomicUsize>,
    acknowledged: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let (head, body) = crate::faults::read_message(&mut client, false).await?;
    let send = crate::faults::header(&head, "x-amz-target")
        .is_some_and(|t| t.ends_with(".SendMessageBatch"));
    if send {
        let entries = serde_json::from_slice::<Value>(&body).unwrap()["Entries"]
            .as_array()
            .map_or(0, Vec::len);
        // One batch decides at a time, so the batches held do not all go at once.
        let mut forwarded = forwarded.lock().await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while *forwarded >= read.load(Ordering::SeqCst) + GATE && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        *forwarded += entries;
    }
    let mut server = tokio::net::TcpStream::connect(upstream).await?;
    server.write_all(head.as_bytes()).await?;
    server.write_all(&body).await?;
    if send {
        // Noted before qp has the answer, so nothing qp counts as sent is missing here.
        let (head, body) = crate::faults::read_message(&mut server, false).await?;
        if let Ok(answer) = serde_json::from_slice::<Value>(&body) {
            let ids = answer["Successful"].as_array().into_iter().flatten();
            acknowledged.lock().unwrap().extend(
                ids.filter_map(|s| s["MessageId"].as_str())
                    .map(str::to_owned),
            );
        }
        client.write_all(head.as_bytes()).await?;
        client.write_all(&body).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// Runs an enqueue while [`READERS`] receivers take what it sends and delete it at once, until it
/// has exited and the queue is empty; its requests go through a [`SendGate`] in front of the
/// endpoint it was given. With `term_after`, the enqueue gets SIGTERM once that many keys were
/// read. Returns its output, its summary and the keys read, each decoded by the worker's own
/// parser and asserted to come exactly once, from `bucket`.
async fn enqueue_reading(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    bucket: &str,
    cmd: &mut Command,
    term_after: Option<usize>,
) -> (Output, Value, BTreeSet<String>) {
    let endpoint = cmd
        .get_envs()
        .find(|(k, _)| *k == "AWS_ENDPOINT_URL")
        .and_then(|(_, v)| v)
        .expect("an endpoint to put the gate in front of")
        .to_str()
        .unwrap()
        .to_string();
    let upstream = endpoint.trim_start_matches("http://").parse().unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let gate = SendGate::start(upstream, read.clone()).await;
    cmd.env("AWS_ENDPOINT_URL", format!("http://{}", gate.addr));
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Its output is read as it comes (a full pipe would stall it); `exited` is set once it has.
    let exited = Arc::new(AtomicBool::new(false));
    let output = {
        let exited = exited.clone();
        std::thread::spawn(move || {
            let o = child.wait_with_output().unwrap();
            exited.store(true, Ordering::SeqCst);
            o
        })
    };
    let messages: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (sqs, url, bucket) = (sqs.clone(), url.to_string(), bucket.to_string());
            let (messages, exited, read) = (messages.clone(), exited.clone(), read.clone());
            tokio::spawn(async move {
                loop {
                    // Read before the receive: an empty receive after the exit means an empty
                    // queue (every message ever received was recorded before its delete).
                    let done = exited.load(Ordering::SeqCst);
                    let got = receive_some(&sqs, &url).await;
                    if got.is_empty() {
                        // A receive whose response was lost (a retry under load) leaves its
                        // messages in flight until their visibility timeout: wait them out.
                        if done && queue_depth(&sqs, &url).await == (0, 0) {
                            return;
                        }
                        continue;
                    }
                    let mut delete = sqs.delete_message_batch().queue_url(&url);
                    for (i, m) in got.iter().enumerate() {
                        let body = m.body.clone().unwrap_or_default();
                        let Ok(qp::event::Body::Objects(refs)) = qp::event::parse(&body) else {
                            panic!("the worker cannot read {body}")
                        };
                        assert_eq!(refs.len(), 1, "one record per message: {body}");
                        assert_eq!(refs[0].bucket, bucket);
                        // moto may hand one message to two concurrent receivers (SQS may too):
                        // the same message id twice is a redelivery; a second id for a key is a
                        // second message.
                        let id = m.message_id.clone().unwrap();
                        let first = {
                            let mut messages = messages.lock().unwrap();
                            let first = messages
                                .entry(refs[0].key.clone())
                                .or_insert_with(|| id.clone())
                                .clone();
                            read.store(messages.len(), Ordering::SeqCst);
                            first
                        };
                        assert_eq!(first, id, "{:?} enqueued twice", refs[0].key);
                        delete = delete.entries(
                            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(m.receipt_handle.clone().unwrap())
                                .build()
                                .unwrap(),
                        );
                    }
                    // A redelivered message's older receipt may fail to delete: harmless here.
                    delete.send().await.unwrap();
                }
            })
        })
        .collect();
    let mut signalled = false;
    while !exited.load(Ordering::SeqCst) {
        if let Some(n) = term_after
            && !signalled
            && messages.lock().unwrap().len() >= n
        {
            let kill = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            signalled = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        r.await.unwrap();
    }
    let o = output.join().unwrap();
    assert_eq!(
        signalled,
        term_after.is_some(),
        "the enqueue ended before {term_after:?} keys were read: {}",
        stderr(&o)
    );
    let messages = std::mem::take(&mut *messages.lock().unwrap());
    let ids: HashSet<&String> = messages.values().collect();
    let lost: Vec<String> = gate
        .acknowledged
        .lock()
        .unwrap()
        .iter()
        .filter(|id| !ids.contains(id))
        .cloned()
        .collect();
    assert!(
        lost.is_empty(),
        "moto acknowledged {} messages the readers never got (lost in the emulator, or the \
         readers stopped early): {lost:?}",
        lost.len()
    );
    let keys: BTreeSet<String> = messages.into_keys().collect();
    let out = stdout(&o);
    let v: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{}", stderr(&o)));
    (o, v, keys)
}

fn enqueue(moto: &Moto, queue: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = qp();
    moto.configure(&mut cmd);
    cmd.arg("enqueue")
        .args(args)
        .env("QP_S3_FORCE_PATH_STYLE", "true")
        .env("QP_LOG_FORMAT", "json")
        .stdin(Stdio::null());
    if let Some(q) = queue {
        cmd.env("QP_QUEUE_URL", q);
    }
    cmd
}

/// Runs to exit; returns the output and the one JSON object on stdout.
fn summary(cmd: &mut Command) -> (Output, Value) {
    let o = cmd.output().unwrap();
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one JSON line on stdout: {out}\n{}",
        stderr(&o)
    );
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    (o, v)
}

/// 10,500 objects (7,350 images) under several folders: one full enqueue, each image once, and
/// `--dry-run`, `--start-after`, several targets and SIGTERM with resume, each over a part of the
/// bucket (every object through moto costs its S3 listing and SQS model a walk of the whole
/// bucket or queue; one full pass keeps the test within a few minutes on 2 shared CPUs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueues_ten_thousand_awkward_keys_each_image_once() {
    let whole = Instant::now();
    let moto = Moto::start();
    let (s3, sqs) = (moto.s3().await, moto.sqs().await);
    s3.create_bucket().bucket(SRC).send().await.unwrap();
    let n = 10_500;
    let objects: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (corpus_key(i).0, vec![b'x'; corpus_size(i)]))
        .collect();
    let started = Instant::now();
    upload_all(&s3, SRC, objects).await;
    eprintln!(
        "uploaded {n} objects in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let all: BTreeSet<String> = (0..n).map(|i| corpus_key(i).0).collect();
    let images: BTreeSet<String> = (0..n)
        .filter(|&i| corpus_key(i).1)
        .map(|i| corpus_key(i).0)
        .collect();
    let image_bytes: usize = (0..n).filter(|&i| corpus_key(i).1).map(corpus_size).sum();
    assert_eq!(all.len(), n);

    // --dry-run: counts and bytes, no queue needed, nothing sent.
    let started = Instant::now();
    let q1 = create_queue(&sqs, "q1").await;
    let (o, v) = summary(&mut enqueue(&moto, None, &["s3://photos", "--dry-run"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(v["listed"], n);
    assert_eq!(v["matched"], images.len());
    assert_eq!(v["skipped"], n - images.len());
    assert_eq!(v["bytes"], image_bytes);
    assert_eq!(
        (v["sent"].as_u64(), v["dry_run"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(queue_depth(&sqs, &q1).await, (0, 0));
    eprintln!("dry run in {:.1} s", started.elapsed().as_secs_f64());

    // The whole bucket: its first level is listed concurrently.
    let started = Instant::now();
    let (o, v, keys) = enqueue_reading(
        &sqs,
        &q1,
        SRC,
        &mut enqueue(&moto, Some(&q1), &["s3://photos"]),
        None,
    )
    .await;
    let took = started.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(v["sent"], images.len());
    assert_eq!(
        (v["failed"].as_u64(), v["retried"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(v["skipped"], n - images.len());
    assert_eq!(v["last_key"], *all.last().unwrap());
    assert_eq!(v["interrupted"], false);
    assert_eq!(keys, images);
    eprintln!(
        "enqueued {} images in {:.1} s",
        images.len(),
        took.as_secs_f64()
    );

    // --start-after a key inside a folder two levels down (keys of that folder on both sides
    // of it): only the keys after it, whatever folder they are in.
    let started = Instant::now();
    let k = all.iter().nth(9600).unwrap().clone();
    let folder = &k[..k.rfind('/').unwrap() + 1];
    assert!(folder.matches('/').count() >= 2, "{k}");
    assert!(all.iter().any(|a| a.starts_with(folder) && *a < k));
    assert!(all.iter().any(|a| a.starts_with(folder) && *a > k));
    let q2 = create_queue(&sqs, "q2").await;
    let mut cmd = enqueue(&moto, Some(&q2), &["s3://photos", "--start-after", &k]);
    let (o, v, keys) = enqueue_reading(&sqs, &q2, SRC, &mut cmd, None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let after: BTreeSet<String> = images.iter().filter(|i| **i > k).cloned().collect();
    assert_eq!(v["listed"], all.iter().filter(|a| **a > k).count());
    assert_eq!(v["sent"], after.len());
    assert_eq!(keys, after);
    eprintln!(
        "--start-after: {} images in {:.1} s",
        after.len(),
        started.elapsed().as_secs_f64()
    );

    // Several targets (one inside another is listed once).
    let started = Instant::now();
    let q3 = create_queue(&sqs, "q3").await;
    let mut cmd = enqueue(
        &moto,
        Some(&q3),
        &[
            "s3://photos/deep/",
            "s3://photos/a b/",
            "s3://photos/deep/1/2/",
        ],
    );
    let (o, v, keys) = enqueue_reading(&sqs, &q3, SRC, &mut cmd, None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let chosen: BTreeSet<String> = images
        .iter()
        .filter(|i| i.starts_with("deep/") || i.starts_with("a b/"))
        .cloned()
        .collect();
    assert_eq!(v["sent"], chosen.len());
    assert_eq!(keys, chosen);
    eprintln!(
        "several targets: {} images in {:.1} s",
        chosen.len(),
        started.elapsed().as_secs_f64()
    );

    // SIGTERM mid-run, under a prefix whose first level holds two folders (listed at the same
    // time): the summary names the key to resume from; resuming from it sends the rest, and
    // every image under the prefix is on the queue exactly once.
    let started = Instant::now();
    let part: BTreeSet<String> = images
        .iter()
        .filter(|i| i.starts_with("x/"))
        .cloned()
        .collect();
    let firsts: BTreeSet<&str> = part.iter().map(|k| k.split('/').nth(1).unwrap()).collect();
    assert_eq!(firsts.len(), 2, "{firsts:?}");
    let q4 = create_queue(&sqs, "q4").await;
    let mut cmd = enqueue(&moto, Some(&q4), &["s3://photos/x/"]);
    let (o, v, first_keys) = enqueue_reading(&sqs, &q4, SRC, &mut cmd, Some(200)).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(v["interrupted"], true);
    let resume = v["last_key"].as_str().unwrap().to_string();
    let first = v["sent"].as_u64().unwrap() as usize;
    assert!(first > 0 && first < part.len(), "{v}");
    let upto: BTreeSet<String> = part.iter().filter(|i| **i <= resume).cloned().collect();
    assert_eq!(first_keys, upto);
    let mut cmd = enqueue(
        &moto,
        Some(&q4),
        &["s3://photos/x/", "--start-after", &resume],
    );
    let (o, v, rest) = enqueue_reading(&sqs, &q4, SRC, &mut cmd, None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(v["sent"].as_u64().unwrap() as usize, part.len() - first);
    assert!(first_keys.is_disjoint(&rest));
    assert_eq!(first_keys.union(&rest).count(), part.len());
    eprintln!(
        "SIGTERM after {first} of {}, resumed: {:.1} s; the whole test: {:.1} s",
        part.len(),
        started.elapsed().as_secs_f64(),
        whole.elapsed().as_secs_f64()
    );
}

/// Up to 10 messages, waiting a second for them.
async fn receive_some(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

/// `n` keys `FOLDERnn.jpg` (FOLDER ends in `/`), sorted.
fn jpg_keys(folder: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{folder}{i:02}.jpg")).collect()
}

/// A moto with the source bucket holding `keys` (one byte each) and an empty queue.
async fn small_bucket(keys: &[String]) -> (Moto, aws_sdk_sqs::Client, String) {
    let moto = Moto::start();
    let (s3, sqs) = (moto.s3().await, moto.sqs().await);
    s3.create_bucket().bucket(SRC).send().await.unwrap();
    upload_all(
        &s3,
        SRC,
        keys.iter().map(|k| (k.clone(), b"x".to_vec())).collect(),
    )
    .await;
    let q = create_queue(&sqs, "q").await;
    (moto, sqs, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_entry_is_retried_then_reported() {
    let mut keys = jpg_keys("f/", 28);
    keys.push("f/retry me.jpg".into());
    keys.push("f/never.jpg".into());
    let (moto, sqs, q) = small_bucket(&keys).await;
    // "retry me" is refused twice, then accepted; "never" always.
    let mut seen: HashMap<String, u32> = HashMap::new();
    let upstream = moto.addr();
    let proxy = EntryFaultProxy::start(upstream, move |body| {
        let n = seen.entry(body.to_string()).or_default();
        *n += 1;
        body.contains("retry+me") && *n <= 2 || body.contains("never.jpg")
    })
    .await;
    let mut cmd = enqueue(&moto, Some(&q), &["s3://photos/f/"]);
    cmd.env("AWS_ENDPOINT_URL", proxy.endpoint());
    let (o, v, keys_read) = enqueue_reading(&sqs, &q, SRC, &mut cmd, None).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(v["sent"], 29);
    assert_eq!(v["failed"], 1);
    // Two refusals of "retry me", four resends of "never" (five attempts in all).
    assert_eq!(v["retried"], 2 + 4);
    assert_eq!(
        proxy.refused.load(std::sync::atomic::Ordering::Relaxed),
        2 + 5
    );
    let failed = &v["failed_keys"][0];
    assert_eq!(
        (failed["bucket"].as_str(), failed["key"].as_str()),
        (Some(SRC), Some("f/never.jpg"))
    );
    assert!(
        failed["error"].as_str().unwrap().contains("InternalError"),
        "{failed}"
    );
    // The log names the object and the cause too.
    let log = stderr(&o);
    assert!(
        log.contains("f/never.jpg") && log.contains("injected"),
        "{log}"
    );
    let expected: BTreeSet<String> = keys.into_iter().filter(|k| k != "f/never.jpg").collect();
    assert_eq!(keys_read, expected);
}

/// A SendMessageBatch refused as a whole (HTTP 503, ServiceUnavailable) is sent again, and when
/// it never passes every key is reported failed with SQS's code and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_is_sent_again_then_reported_by_key() {
    let keys = jpg_keys("h/", 12);
    let (moto, _sqs, q) = small_bucket(&keys).await;
    let upstream = moto.addr();
    let proxy = FaultProxy::start_only(upstream, "AmazonSQS.SendMessageBatch").await;
    proxy.set_failing(true);
    let mut cmd = enqueue(&moto, Some(&q), &["s3://photos/h/"]);
    cmd.env("AWS_ENDPOINT_URL", proxy.endpoint());
    let (o, v) = summary(&mut cmd);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        (v["sent"].as_u64(), v["failed"].as_u64()),
        (Some(0), Some(12)),
        "{v}"
    );
    // Two batches (10 + 2), each tried 5 times.
    assert_eq!(proxy.stats.answered_503.load(Ordering::Relaxed), 2 * 5);
    let failed: BTreeSet<String> = v["failed_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let error = f["error"].as_str().unwrap();
            assert!(
                error.contains(&q)
                    && error.contains("ServiceUnavailable: injected fault")
                    && error.contains("5 attempts"),
                "{f}"
            );
            f["key"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(failed, keys.into_iter().collect());
}

/// A SendMessageBatch that SQS takes and never answers does not hang `qp enqueue`: the attempt
/// times out (`aws::ATTEMPT_TIMEOUT`) and the batch is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_batch_times_out_and_is_sent_again() {
    let keys = jpg_keys("g/", 15);
    let (moto, sqs, q) = small_bucket(&keys).await;
    let upstream = moto.addr();
    let proxy = FaultProxy::start_silent_on(upstream, "AmazonSQS.SendMessageBatch").await;
    proxy.set_failing(true);
    let mut cmd = enqueue(&moto, Some(&q), &["s3://photos/g/"]);
    cmd.env("AWS_ENDPOINT_URL", proxy.endpoint());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once a batch is held, the next attempts get through.
    while proxy.stats.dropped.load(Ordering::Relaxed) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "qp exited before sending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set_failing(false);
    // A guard, not a timing check: without a timeout of its own qp would wait forever, and
    // the test would hang rather than fail.
    let deadline = Instant::now() + qp::aws::ATTEMPT_TIMEOUT * 6;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("qp enqueue still waits on an unanswered SendMessageBatch");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (v["sent"].as_u64(), v["failed"].as_u64()),
        (Some(15), Some(0)),
        "{v}"
    );
    // Every key is on the queue (once: the held batch never reached moto).
    assert_eq!(read_keys(&sqs, &q, keys.len()).await, keys);
}

/// Reads and deletes `n` messages from the queue; their keys, sorted, as the worker reads them.
async fn read_keys(sqs: &aws_sdk_sqs::Client, q: &str, n: usize) -> Vec<String> {
    let mut read = Vec::new();
    while read.len() < n {
        let got = receive_some(sqs, q).await;
        assert!(!got.is_empty(), "{} of {n} keys on the queue", read.len());
        for m in got {
            let body = m.body.unwrap_or_default();
            let Ok(qp::event::Body::Objects(refs)) = qp::event::parse(&body) else {
                panic!("the worker cannot read {body}")
            };
            read.extend(refs.into_iter().map(|r| r.key));
            sqs.delete_message()
                .queue_url(q)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    read.sort();
    read
}

/// `AWS_ENDPOINT_URL_S3` and `AWS_ENDPOINT_URL_SQS` win over `AWS_ENDPOINT_URL` (here a port
/// nothing listens on), for the listing and for the hand-made SendMessageBatch alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_specific_endpoints_win() {
    let keys = jpg_keys("e/", 12);
    let (moto, sqs, q) = small_bucket(&keys).await;
    let dead = format!("http://127.0.0.1:{}", crate::util::free_port());
    let mut cmd = enqueue(&moto, Some(&q), &["s3://photos/e/"]);
    cmd.env("AWS_ENDPOINT_URL", &dead)
        .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_SQS", &moto.endpoint);
    let (o, v) = summary(&mut cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        (v["sent"].as_u64(), v["failed"].as_u64()),
        (Some(12), Some(0)),
        "{v}"
    );
    assert_eq!(read_keys(&sqs, &q, keys.len()).await, keys);
    // And the SQS one is what the sender uses: pointed at nothing, every batch fails.
    let mut cmd = enqueue(&moto, Some(&q), &["s3://photos/e/"]);
    cmd.env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_SQS", &dead);
    let (o, v) = summary(&mut cmd);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        (v["sent"].as_u64(), v["failed"].as_u64()),
        (Some(0), Some(12)),
        "{v}"
    );
}

/// Real SQS is HTTPS: the listing and the hand-made SendMessageBatch both go through TLS (a
/// proxy with a certificate from a CA of the test's own, trusted through `SSL_CERT_FILE` as an
/// operator's private CA would be) and every key arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_with_the_systems_trust_store() {
    let keys = jpg_keys("t/", 14);
    let (moto, sqs, q) = small_bucket(&keys).await;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::util::free_port();
    let python = crate::util::moto_python();
    let mut proxy = Command::new(&python[0])
        .args(&python[1..])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls_proxy.py"))
        .arg(dir.path())
        .args([port.to_string(), moto.port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let ca = dir.path().join("ca.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ca.exists() {
        assert!(Instant::now() < deadline, "the TLS proxy did not start");
        assert!(proxy.try_wait().unwrap().is_none(), "the TLS proxy exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut cmd = enqueue(&moto, Some(&q), &["s3://photos/t/"]);
    cmd.env("AWS_ENDPOINT_URL", format!("https://127.0.0.1:{port}"))
        .env("SSL_CERT_FILE", &ca);
    let (o, v) = summary(&mut cmd);
    let handshakes = std::fs::read_to_string(dir.path().join("handshakes")).unwrap_or_default();
    proxy.kill().unwrap();
    proxy.wait().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        (v["sent"].as_u64(), v["failed"].as_u64()),
        (Some(14), Some(0)),
        "{v}"
    );
    // One listing and two batches at least, each on a TLS connection of its own (moto closes
    // every connection after one answer).
    assert!(handshakes.lines().count() >= 3, "{handshakes:?}");
    assert_eq!(read_keys(&sqs, &q, keys.len()).await, keys);
}

#[test]
fn bad_settings_exit_2_naming_the_setting() {
    for (args, env, words) in [
        (vec!["enqueue", "s3://photos"], vec![], "QP_QUEUE_URL"),
        (
            vec!["enqueue", "photos", "--dry-run"],
            vec![],
            "s3://BUCKET",
        ),
        (
            vec!["enqueue", "s3://photos", "--dry-run"],
            vec![("QP_SUFFIXES", ",")],
            "QP_SUFFIXES",
        ),
        // No region from anywhere (the test's environment is cleaned): refused before any call.
        (
            vec!["enqueue", "s3://photos"],
            vec![("QP_QUEUE_URL", "https://sqs.eu-west-3.amazonaws.com/1/q")],
            "AWS_REGION",
        ),
        (vec!["reconcile", "s3://photos"], vec![], "QP_DEST_BUCKET"),
        (
            vec!["reconcile", "s3://photos", "--enqueue"],
            vec![("QP_DEST_BUCKET", "out")],
            "QP_QUEUE_URL",
        ),
        (
            vec!["reconcile", "s3://photos"],
            vec![("QP_DEST_BUCKET", "out"), ("QP_SIZES", "big")],
            "big",
        ),
    ] {
        let o = qp()
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(words), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
}

/// The deployment of the drill: a source bucket with no notification, a destination, a queue.
struct Backfill {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    queue: String,
    logs: tempfile::TempDir,
}

const DRILL_SRC: &str = "qp-source";
const DRILL_DST: &str = "qp-destination";

impl Backfill {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = qp();
        self.moto.configure(&mut cmd);
        cmd.args(args)
            .env("QP_QUEUE_URL", &self.queue)
            .env("QP_DEST_BUCKET", DRILL_DST)
            .env("QP_S3_FORCE_PATH_STYLE", "true")
            .env("QP_LOG_FORMAT", "json")
            .stdin(Stdio::null());
        cmd
    }

    fn reconcile(&self, extra: &[&str]) -> (Output, Value) {
        let mut args = vec!["reconcile", "s3://qp-source"];
        args.extend_from_slice(extra);
        summary(&mut self.command(&args))
    }

    /// Starts `qp work`; its log goes to a file (a pipe would fill up and block it).
    fn worker(&self, name: &str) -> (std::process::Child, std::path::PathBuf) {
        let log = self.logs.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command(&["work"])
            .env("QP_IDLE_TIMEOUT_SECS", "5")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        (child, log)
    }

    /// Waits for a worker to idle out and exit 0.
    fn idle_out(&self, (mut child, log): (std::process::Child, std::path::PathBuf)) {
        let deadline = Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "qp work did not idle out: {}",
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
}

fn missing_keys(v: &Value) -> Vec<String> {
    v["missing"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// Images that were in the bucket before any notification existed: enqueue them, drain, and let
/// reconcile prove that nothing is missing; lose five outputs, find exactly those, repair them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_backfill_then_reconcile_and_repair() {
    let moto = Moto::start();
    let (s3, sqs) = (moto.s3().await, moto.sqs().await);
    for b in [DRILL_SRC, DRILL_DST] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let queue = sqs
        .create_queue()
        .queue_name("qp-uploads")
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let samples: Vec<(String, Vec<u8>)> = {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .map(|p| {
                let name = p.file_name().unwrap().to_str().unwrap().to_string();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let folders = ["", "raw/", "a b/c+d/", "Ünïcødé/日本/", "deep/1/2/3/4/5/"];
    let mut uploads: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|i| {
            let (name, bytes) = &samples[i % samples.len()];
            (
                format!("{}batch {i}/{name}", folders[i % folders.len()]),
                bytes.clone(),
            )
        })
        .collect();
    uploads.push(("raw/notes.txt".into(), b"not an image".to_vec()));
    let started = Instant::now();
    upload_all(&s3, DRILL_SRC, uploads.clone()).await;
    eprintln!(
        "drill: 1000 images uploaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let env = Backfill {
        moto,
        s3,
        queue,
        logs: crate::util::tempdir(),
    };

    // The worker runs while the enqueue sends, as the tasks the scaler starts would (and moto,
    // which walks the whole queue on every message sent, stays quick).
    let started = Instant::now();
    let worker = env.worker("first");
    let (o, v) =
        tokio::task::block_in_place(|| summary(&mut env.command(&["enqueue", "s3://qp-source"])));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        (v["sent"].as_u64(), v["skipped"].as_u64()),
        (Some(1000), Some(1))
    );
    tokio::task::block_in_place(|| env.idle_out(worker));
    eprintln!(
        "drill: enqueued and drained 1000 in {:.1} s (with the 5 s idle timeout)",
        started.elapsed().as_secs_f64()
    );

    let (o, v) = tokio::task::block_in_place(|| env.reconcile(&[]));
    assert_eq!(o.status.code(), Some(0), "{v}\n{}", stderr(&o));
    assert_eq!(
        (v["sources"].as_u64(), v["complete"].as_u64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(
        (
            v["missing"]["count"].as_u64(),
            v["orphans"]["count"].as_u64()
        ),
        (Some(0), Some(0))
    );

    // Five outputs lost, and one output whose source never existed.
    let mut lost: Vec<String> = [3, 250, 501, 777, 999]
        .iter()
        .map(|&i| uploads[i].0.clone())
        .collect();
    lost.sort();
    for key in &lost {
        env.s3
            .delete_object()
            .bucket(DRILL_DST)
            .key(format!("processed/{key}"))
            .send()
            .await
            .unwrap();
    }
    env.s3
        .put_object()
        .bucket(DRILL_DST)
        .key("processed/raw/ghost.jpg")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let (o, v) = tokio::task::block_in_place(|| env.reconcile(&[]));
    assert_eq!(o.status.code(), Some(1), "{v}\n{}", stderr(&o));
    assert_eq!(v["missing"]["count"], 5);
    assert_eq!(missing_keys(&v), lost);
    assert_eq!(v["complete"], 995);
    assert_eq!(
        v["orphans"]["keys"],
        serde_json::json!(["processed/raw/ghost.jpg"])
    );

    // --enqueue sends exactly those five; the worker makes them again.
    let (o, v) = tokio::task::block_in_place(|| env.reconcile(&["--enqueue"]));
    assert_eq!(o.status.code(), Some(1), "{v}\n{}", stderr(&o));
    assert_eq!(v["enqueued"]["sent"], 5);
    tokio::task::block_in_place(|| env.idle_out(env.worker("repair")));
    let (o, v) = tokio::task::block_in_place(|| env.reconcile(&[]));
    assert_eq!(o.status.code(), Some(0), "{v}\n{}", stderr(&o));
    assert_eq!(v["complete"], 1000);

    // --newer: a source written again after its output counts as missing.
    std::thread::sleep(Duration::from_millis(1100));
    let (key, bytes) = uploads[42].clone();
    upload_all(&env.s3, DRILL_SRC, vec![(key.clone(), bytes)]).await;
    let (o, _) = tokio::task::block_in_place(|| env.reconcile(&[]));
    assert_eq!(o.status.code(), Some(0));
    let (o, v) = tokio::task::block_in_place(|| env.reconcile(&["--newer"]));
    assert_eq!(o.status.code(), Some(1), "{v}");
    assert_eq!(
        (
            v["missing"]["count"].as_u64(),
            v["missing"]["stale"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(missing_keys(&v), [key]);
}
