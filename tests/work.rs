//! `qp work` end to end: the real binary against a private moto server (S3 + SQS), one per test.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::util::{
    Moto, bad_fixtures, decode, fixture_bytes, good_fixtures, notify_queue, qp, queue_arn,
    queue_depth, run, stderr,
};

/// A source bucket notifying a queue whose redrive policy ends in a DLQ, and a destination bucket.
pub(crate) struct Env {
    pub moto: Moto,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub queue: String,
    pub dlq: String,
}

const SRC: &str = "uploads";
const DST: &str = "processed-images";

pub(crate) async fn env(visibility_timeout: u32, notify: bool) -> Env {
    let moto = Moto::start();
    let s3 = moto.s3().await;
    let sqs = moto.sqs().await;
    for b in [SRC, DST] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let dlq = sqs
        .create_queue()
        .queue_name("uploads-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = queue_arn(&sqs, &dlq).await;
    let queue = sqs
        .create_queue()
        .queue_name("uploads")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.to_string(),
        )
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    if notify {
        let arn = queue_arn(&sqs, &queue).await;
        notify_queue(&s3, SRC, arn).await;
    }
    Env {
        moto,
        s3,
        sqs,
        queue,
        dlq,
    }
}

impl Env {
    pub(crate) async fn upload(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(SRC)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }

    async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// `qp work` pointed at this environment, with a short idle timeout.
    pub(crate) fn worker(&self, extra: &[(&str, &str)]) -> Command {
        let mut cmd = qp();
        self.moto.configure(&mut cmd);
        cmd.arg("work")
            .env("QP_QUEUE_URL", &self.queue)
            .env("QP_DEST_BUCKET", DST)
            .env("QP_DLQ_URL", &self.dlq)
            .env("QP_S3_FORCE_PATH_STYLE", "true")
            .env("QP_IDLE_TIMEOUT_SECS", "2")
            .env("QP_LOG_FORMAT", "json");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    async fn get(&self, key: &str) -> Option<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        self.s3.get_object().bucket(DST).key(key).send().await.ok()
    }

    async fn dims(&self, key: &str) -> (u32, u32) {
        let out = self
            .get(key)
            .await
            .unwrap_or_else(|| panic!("no output at {key}"));
        assert_eq!(out.content_type(), Some("image/jpeg"), "{key}");
        let body = out.body.collect().await.unwrap().into_bytes();
        let (w, h, _, _) = decode(&body);
        (w, h)
    }

    pub(crate) async fn dest_keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(DST)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page.unwrap().contents() {
                keys.insert(o.key().unwrap().to_string());
            }
        }
        keys
    }

    /// (visible, in flight) messages of a queue.
    pub(crate) async fn depth(&self, url: &str) -> (u64, u64) {
        queue_depth(&self.sqs, url).await
    }

    /// Every message of a queue (body, attributes), received and hidden for a minute.
    pub(crate) async fn drain(&self, url: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                return all;
            }
            for m in msgs {
                let attrs = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.clone(), v.string_value().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                all.push((m.body.unwrap_or_default(), attrs));
            }
        }
    }
}

/// Runs a worker to its own exit, failing the test if it does not stop within `limit`.
pub(crate) fn run_to_exit(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd.spawn().expect("starting qp work");
    wait_with_limit(child, limit)
}

fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("qp work did not exit within {limit:?}:\n{}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The JSON log lines of a run.
fn log_lines(o: &Output) -> Vec<serde_json::Value> {
    stderr(o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// How many times each key was logged as processed.
fn processed_counts(o: &Output) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for l in log_lines(o) {
        if l["outcome"] == "ok" {
            *counts
                .entry(l["key"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    counts
}

/// The reason each bad fixture must be dead-lettered with.
fn expected_reason(name: &str) -> &'static str {
    match name {
        "bad_truncated.jpg" => "truncated",
        "bad_heic.jpg" => "unsupported_format",
        _ => "not_image",
    }
}

/// A bucket of every format (suffixes in both cases) and one file of each format qp only names:
/// every image has its output at `NAME.EXT.jpg`, every other file is in the DLQ with
/// `unsupported_format` and its cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_a_bucket_of_every_format() {
    let env = env(30, true).await;
    let dir = crate::util::tempdir();
    let manifest = crate::formats::make_fixtures(dir.path(), [0, 0, 0]);
    let (mut images, mut refused) = (Vec::new(), BTreeMap::new());
    for (i, v) in manifest.iter().enumerate() {
        let file = v["file"].as_str().unwrap();
        let (stem, ext) = file.rsplit_once('.').unwrap();
        let ext = if i % 2 == 0 {
            ext.to_ascii_uppercase()
        } else {
            ext.to_string()
        };
        let key = format!("mixed/{stem}.{ext}");
        env.upload(&key, std::fs::read(dir.path().join(file)).unwrap())
            .await;
        match v["refused"].as_str() {
            // Decoded by Pillow, refused by qp with a cause (the README lists them).
            Some(cause) => {
                refused.insert(key, ("unsupported".to_string(), cause.to_string()));
            }
            None => images.push(key),
        }
    }
    let others = crate::formats::unsupported_samples();
    for (name, data, _) in &others {
        env.upload(&format!("other/{name}"), data.clone()).await;
    }
    let o = run_to_exit(env.worker(&[]), Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for key in &images {
        assert_eq!(
            env.dims(&format!("processed/{key}.jpg")).await,
            (224, 224),
            "{key}"
        );
    }
    assert_eq!(
        env.dest_keys().await.len(),
        images.len(),
        "no stray outputs"
    );
    let dead = env.drain(&env.dlq).await;
    let got: BTreeMap<String, (String, String)> = dead
        .iter()
        .map(|(_, a)| {
            (
                a["qp_key"].clone(),
                (a["qp_reason"].clone(), a["qp_error"].clone()),
            )
        })
        .collect();
    let mut want: BTreeMap<String, (String, String)> = others
        .iter()
        .map(|(name, _, cause)| {
            (
                format!("other/{name}"),
                (
                    "unsupported_format".to_string(),
                    format!("unsupported: {cause}"),
                ),
            )
        })
        .collect();
    want.extend(refused);
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_a_notifying_bucket_with_awkward_keys() {
    let env = env(30, true).await;
    let mut good: Vec<(String, Vec<u8>)> = good_fixtures()
        .into_iter()
        .map(|n| (format!("fixtures/{n}"), fixture_bytes(&n)))
        .collect();
    for (key, name) in [
        ("with space/my photo 1.jpg", "baseline_420.jpg"),
        ("plus+sign/a+b=c.jpg", "baseline_444.jpg"),
        ("ünïcödé/日本/写真 €.jpg", "progressive.jpg"),
        ("deep/1/2/3/4/5/6/7/8/9/grayscale.jpg", "grayscale.jpg"),
        ("one/same.jpg", "odd_333x777.jpg"),
        ("two/same.jpg", "baseline_422.jpg"),
        ("percent%20literal/100%.jpg", "restart_interval.jpg"),
    ] {
        good.push((key.to_string(), fixture_bytes(name)));
    }
    let bad: Vec<(String, String)> = bad_fixtures()
        .into_iter()
        .map(|n| (format!("bad/{n}"), n))
        .collect();
    for (key, body) in &good {
        env.upload(key, body.clone()).await;
    }
    for (key, name) in &bad {
        env.upload(key, fixture_bytes(name)).await;
    }

    let o = run_to_exit(env.worker(&[]), Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Every good image at its full key, exactly 224x224, with its provenance.
    for (key, _) in &good {
        assert_eq!(
            env.dims(&format!("processed/{key}")).await,
            (224, 224),
            "{key}"
        );
    }
    assert_eq!(env.dest_keys().await.len(), good.len(), "no stray outputs");
    let same_one = env.get("processed/one/same.jpg").await.unwrap();
    let same_two = env.get("processed/two/same.jpg").await.unwrap();
    assert_ne!(
        same_one.e_tag(),
        same_two.e_tag(),
        "equal names must not collide"
    );
    let uni = env.get("processed/ünïcödé/日本/写真 €.jpg").await.unwrap();
    let meta = uni.metadata().unwrap();
    assert_eq!(meta["source-bucket"], SRC);
    let source_key = percent_encoding::percent_decode_str(&meta["source-key"])
        .decode_utf8()
        .unwrap();
    assert_eq!(source_key, "ünïcödé/日本/写真 €.jpg");

    // Every bad one in the DLQ, with its reason, its key and the original notification.
    let dead = env.drain(&env.dlq).await;
    let mut reasons = BTreeMap::new();
    for (body, attrs) in &dead {
        assert!(body.contains("\"Records\""), "original body kept: {body}");
        reasons.insert(attrs["qp_key"].clone(), attrs["qp_reason"].clone());
        assert!(!attrs["qp_error"].is_empty());
    }
    let expected: BTreeMap<String, String> = bad
        .iter()
        .map(|(key, name)| (key.clone(), expected_reason(name).to_string()))
        .collect();
    assert_eq!(reasons, expected);

    // The work queue is empty (the s3:TestEvent was deleted too), nothing in flight.
    assert_eq!(env.depth(&env.queue).await, (0, 0));

    // A final log line per object, with outcome and latency (a loaded moto can fail a request
    // once: that attempt is logged as a retry, and must end in a final line too); a summary;
    // EMF metrics on stdout. SQS delivers at least once, and moto's concurrent receives do now
    // and then hand one message to both pollers: such a copy is processed again (same outputs,
    // same outcome), so an object may have two final lines, never two different outcomes.
    let logs = log_lines(&o);
    let per_object: Vec<_> = logs
        .iter()
        .filter(|l| l["key"].is_string() && l["latency_ms"].is_number())
        .collect();
    let mut finals: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for l in per_object.iter().filter(|l| l["outcome"] != "retry") {
        finals
            .entry(l["key"].as_str().unwrap())
            .or_default()
            .insert(l["outcome"].as_str().unwrap());
    }
    let expected_keys: BTreeSet<&str> = good
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(bad.iter().map(|(k, _)| k.as_str()))
        .collect();
    assert_eq!(
        finals.keys().copied().collect::<BTreeSet<_>>(),
        expected_keys,
        "{}",
        stderr(&o)
    );
    assert!(finals.values().all(|o| o.len() == 1), "{finals:?}");
    let ok_keys: BTreeSet<&str> = finals
        .iter()
        .filter(|(_, o)| o.contains("ok"))
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(ok_keys, good.iter().map(|(k, _)| k.as_str()).collect());
    // The counters count processings, a redelivered copy included.
    let count = |outcome: &str| {
        per_object
            .iter()
            .filter(|l| l["outcome"] == outcome)
            .count()
    };
    let (oks, fails) = (count("ok"), count("failed"));
    assert!(oks + fails <= good.len() + bad.len() + 2, "too many copies");
    let summary = logs
        .iter()
        .find(|l| l["processed"].is_number())
        .expect("summary line");
    assert_eq!(summary["processed"], oks);
    assert_eq!(summary["failed"], fails);
    assert!(summary["images_per_s"].as_f64().unwrap() > 0.0);
    let emf: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout holds only EMF lines"))
        .collect();
    let total = |name: &str| emf.iter().map(|l| l[name].as_u64().unwrap()).sum::<u64>();
    assert_eq!(total("ImagesProcessed"), oks as u64);
    assert_eq!(total("ImagesFailed"), fails as u64);
    assert_eq!(emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "qp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_and_eventbridge_bodies_and_a_deleted_object() {
    let env = env(30, false).await;
    env.upload("sns/a b.jpg", fixture_bytes("baseline_420.jpg"))
        .await;
    env.upload("eb/c d.jpg", fixture_bytes("odd_333x777.jpg"))
        .await;
    env.upload("gone/x.jpg", fixture_bytes("baseline_444.jpg"))
        .await;
    env.s3
        .delete_object()
        .bucket(SRC)
        .key("gone/x.jpg")
        .send()
        .await
        .unwrap();
    let record = |key: &str| {
        serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": SRC}, "object": {"key": key, "size": 1}}}]})
        .to_string()
    };
    let sns = |message: String| {
        serde_json::json!({"Type": "Notification", "MessageId": "1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads", "Message": message})
        .to_string()
    };
    env.send(&sns(record("sns/a+b.jpg"))).await;
    env.send(&sns(
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"uploads"}"#.into(),
    ))
    .await;
    env.send(
        &serde_json::json!({"version": "0", "id": "e1", "detail-type": "Object Created",
            "source": "aws.s3", "detail": {"bucket": {"name": SRC},
            "object": {"key": "eb/c d.jpg", "size": 1}}})
        .to_string(),
    )
    .await;
    env.send(&record("gone/x.jpg")).await;
    env.send(r#"{"something": "else"}"#).await;

    let o = run_to_exit(
        env.worker(&[
            ("QP_SIZES", "224x224,100x50"),
            ("QP_DEST_PREFIX", "out/v1/"),
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for key in ["sns/a b.jpg", "eb/c d.jpg"] {
        assert_eq!(env.dims(&format!("out/v1/224x224/{key}")).await, (224, 224));
        assert_eq!(env.dims(&format!("out/v1/100x50/{key}")).await, (100, 50));
    }
    assert_eq!(env.dest_keys().await.len(), 4);
    let dead = env.drain(&env.dlq).await;
    let reasons: BTreeSet<(String, String)> = dead
        .iter()
        .map(|(_, a)| {
            (
                a["qp_reason"].clone(),
                a.get("qp_key").cloned().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        BTreeSet::from([
            ("object_gone".to_string(), "gone/x.jpg".to_string()),
            ("bad_body".to_string(), String::new()),
        ])
    );
    assert_eq!(env.depth(&env.queue).await, (0, 0));
}

/// Slow enough per image (two large padded outputs, ~0.3 s in a debug build) that a visibility
/// timeout of 1 s, or a SIGTERM, lands in the middle of the work.
const SLOW: [(&str, &str); 4] = [
    ("QP_SIZES", "4000x4000,3000x3000"),
    ("QP_MODE", "pad"),
    ("QP_CONCURRENCY", "1"),
    ("QP_CPUS", "1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_batch_loses_nothing() {
    let env = env(30, true).await;
    let keys: Vec<String> = (0..30).map(|i| format!("batch/img {i:02}.jpg")).collect();
    for k in &keys {
        env.upload(k, fixture_bytes("baseline_420.jpg")).await;
    }
    let mut cmd = env.worker(&SLOW);
    cmd.env("QP_IDLE_TIMEOUT_SECS", "60")
        .env("QP_SHUTDOWN_GRACE_SECS", "10");
    let child = cmd.spawn().unwrap();
    // Wait for the first output, then SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.dest_keys().await.is_empty() {
        assert!(Instant::now() < deadline, "no output within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let signalled = Instant::now();
    let o = wait_with_limit(child, Duration::from_secs(12));
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exceeded the grace period"
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Everything is either done or immediately visible again for the next worker.
    let done: BTreeSet<String> = env
        .dest_keys()
        .await
        .into_iter()
        .filter_map(|k| k.strip_prefix("processed/4000x4000/").map(str::to_string))
        .collect();
    assert!(
        done.len() < keys.len(),
        "stopped mid-batch (done {})",
        done.len()
    );
    let (visible, hidden) = env.depth(&env.queue).await;
    assert_eq!(hidden, 0, "messages left invisible");
    let back: BTreeSet<String> = env
        .drain(&env.queue)
        .await
        .iter()
        .filter_map(|(body, _)| match qp::event::parse(body) {
            Ok(qp::event::Body::Objects(o)) => Some(o[0].key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(back.len() as u64, visible);
    let all: BTreeSet<String> = done.union(&back).cloned().collect();
    assert_eq!(
        all,
        keys.iter().cloned().collect(),
        "every image done or back"
    );
    assert!(stderr(&o).contains("shutting down"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_outlives_a_short_visibility_timeout() {
    // Visibility 1 s; the batch takes several seconds on one thread. Without the heartbeat the
    // waiting messages would reappear and be processed twice.
    let env = env(1, true).await;
    let keys: Vec<String> = (0..16).map(|i| format!("hb/{i:02}.jpg")).collect();
    for k in &keys {
        env.upload(k, fixture_bytes("baseline_420.jpg")).await;
    }
    let started = Instant::now();
    let o = run_to_exit(env.worker(&SLOW), Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "the work must outlast the visibility timeout several times ({:?})",
        started.elapsed()
    );
    let counts = processed_counts(&o);
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), keys);
    assert!(
        counts.values().all(|&n| n == 1),
        "processed twice: {counts:?}"
    );
    assert_eq!(env.depth(&env.queue).await, (0, 0));
    assert!(env.drain(&env.dlq).await.is_empty());
}

#[test]
fn missing_config_is_a_clear_error() {
    let o = run(qp().arg("work"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("QP_QUEUE_URL"), "{}", stderr(&o));
    let o = run(qp().arg("work").env("QP_QUEUE_URL", "http://127.0.0.1:9/q"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("QP_DEST_BUCKET"), "{}", stderr(&o));
    let o = run(qp()
        .arg("work")
        .env("QP_QUEUE_URL", "http://127.0.0.1:9/q")
        .env("QP_DEST_BUCKET", "b")
        .env("QP_SIZES", "big"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
