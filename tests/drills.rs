//! Failure drills: real `qp` processes against moto, each asserting that no image is lost.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::faults::FaultProxy;
use crate::pipeline::{
    Cloud, CloudOptions, Fargate, Lambda, Uploads, run_until_drained, upload_corpus, verify,
};

/// Waits for `child` to exit, killing it (and failing) after `limit`.
fn wait(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("process still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Polls until at least `n` outputs exist.
fn wait_for_outputs(cloud: &Cloud, n: usize, limit: Duration) {
    let started = Instant::now();
    while cloud.outputs().len() < n {
        assert!(
            started.elapsed() < limit,
            "fewer than {n} outputs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_all_done(cloud: &Cloud, uploads: &Uploads, need_reason: bool) {
    let verdict = verify(cloud, uploads, need_reason);
    assert!(verdict.ok(), "{verdict:#?}");
    assert_eq!(cloud.depth(), (0, 0), "the queue is not empty");
}

#[test]
fn kill_9_mid_batch_loses_nothing() {
    let cloud = Cloud::create(CloudOptions {
        visibility_timeout: 5,
        // Longer than the visibility timeout: the survivor waits for the victim's messages.
        idle_timeout: 12,
        ..CloudOptions::default()
    });
    let uploads = upload_corpus(&cloud, 8, |_| {});
    // One image at a time (while still holding a receive's worth of messages), so the kill
    // lands mid-batch however fast the machine is.
    let slow = [("QP_CONCURRENCY", "1"), ("QP_CPUS", "1")].map(|(k, v)| (k.into(), v.into()));
    let mut victim = spawn(cloud.worker_command(&slow));
    wait_for_outputs(&cloud, 4, Duration::from_secs(60));
    victim.kill().unwrap();
    victim.wait().unwrap();
    let (_, in_flight) = cloud.depth();
    let done_by_victim = cloud.outputs().len();
    assert!(
        in_flight > 0 && done_by_victim < uploads.good.len(),
        "the kill came after the batch: {done_by_victim} done, {in_flight} in flight"
    );
    let mut survivor = spawn(cloud.worker_command(&[]));
    let (status, _) = wait(&mut survivor, Duration::from_secs(180));
    assert!(status.success(), "{}", stderr_of(&mut survivor));
    assert_all_done(&cloud, &uploads, true);
    eprintln!(
        "kill -9 drill: {done_by_victim} done before the kill, {in_flight} messages in flight at \
         it, all recovered"
    );
}

#[test]
fn sigterm_mid_batch_exits_in_time_and_releases_unstarted_messages() {
    let grace = 20;
    let cloud = Cloud::create(CloudOptions {
        // Anything not released explicitly would stay invisible for two minutes.
        visibility_timeout: 120,
        worker_env: vec![
            ("QP_SHUTDOWN_GRACE_SECS".into(), grace.to_string()),
            // Few at a time, so most messages are still unstarted at the signal.
            ("QP_CONCURRENCY".into(), "2".into()),
        ],
        ..CloudOptions::default()
    });
    let uploads = upload_corpus(&cloud, 8, |_| {});
    let mut worker = spawn(cloud.worker_command(&[]));
    wait_for_outputs(&cloud, 3, Duration::from_secs(60));
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (status, took) = wait(&mut worker, Duration::from_secs(grace + 10));
    let log = stderr_of(&mut worker);
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(took <= Duration::from_secs(grace), "took {took:?}");
    // Released at once: nothing is left invisible behind the 120 s timeout.
    let (visible, in_flight) = cloud.depth();
    assert_eq!(
        in_flight, 0,
        "messages still invisible after the shutdown: {log}"
    );
    let done = cloud.outputs().len();
    let mut next = spawn(cloud.worker_command(&[]));
    let (status, _) = wait(&mut next, Duration::from_secs(180));
    assert!(status.success(), "{}", stderr_of(&mut next));
    assert_all_done(&cloud, &uploads, true);
    eprintln!(
        "SIGTERM drill: exited in {:.1} s, {done} done before, {visible} released at once",
        took.as_secs_f64()
    );
}

#[test]
fn a_poison_image_goes_to_the_dlq_with_its_reason_and_blocks_nothing() {
    let cloud = Cloud::create(CloudOptions::default());
    let uploads = upload_corpus(&cloud, 2, |_| {});
    let mut worker = spawn(cloud.worker_command(&[]));
    let (status, _) = wait(&mut worker, Duration::from_secs(120));
    assert!(status.success(), "{}", stderr_of(&mut worker));
    assert_all_done(&cloud, &uploads, true);
    for (_, attrs) in cloud.dlq() {
        let reason = attrs
            .iter()
            .find(|(k, _)| k.contains("reason"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(
            ["not_image", "unsupported_format", "truncated", "corrupt"].contains(&reason.as_str()),
            "reason {reason:?} in {attrs:?}"
        );
    }
}

/// Without `QP_DLQ_URL` the worker leaves poison messages alone and the queue's redrive policy
/// moves them after `maxReceiveCount` receives.
#[test]
fn without_a_dlq_url_poison_takes_the_redrive_path_after_bounded_attempts() {
    let cloud = Cloud::create(CloudOptions {
        visibility_timeout: 2,
        max_receive_count: 2,
        worker_dlq: false,
        idle_timeout: 10,
        ..CloudOptions::default()
    });
    let uploads = upload_corpus(&cloud, 1, |_| {});
    let mut worker = spawn(cloud.worker_command(&[]));
    let (status, _) = wait(&mut worker, Duration::from_secs(120));
    assert!(status.success(), "{}", stderr_of(&mut worker));
    assert_all_done(&cloud, &uploads, false);
}

#[test]
fn the_endpoint_failing_for_a_while_loses_nothing() {
    let cloud = Cloud::create(CloudOptions {
        // Messages whose calls failed come back quickly; a worker idles out after 8 s.
        visibility_timeout: 6,
        idle_timeout: 8,
        ..CloudOptions::default()
    });
    let uploads = upload_corpus(&cloud, 6, |_| {});
    let upstream = cloud.moto.addr();
    let proxy = cloud.rt.block_on(FaultProxy::start(upstream));
    let worker = || {
        let mut cmd = cloud.worker_command(&[]);
        cmd.env("AWS_ENDPOINT_URL", proxy.endpoint());
        spawn(cmd)
    };
    let mut first = worker();
    // Two outages while the batch is in progress.
    for (wait_before, outage) in [(1, 3), (2, 2)] {
        std::thread::sleep(Duration::from_secs(wait_before));
        proxy.set_failing(true);
        std::thread::sleep(Duration::from_secs(outage));
        proxy.set_failing(false);
    }
    let (status, _) = wait(&mut first, Duration::from_secs(240));
    assert!(status.success(), "{}", stderr_of(&mut first));
    // What failed mid-outage is back on the queue; as the scaler would, start workers until
    // the queue is drained (bounded: a loss would show as a queue that never empties).
    let mut relaunches = 0;
    while cloud.depth() != (0, 0) {
        relaunches += 1;
        assert!(
            relaunches <= 4,
            "the queue never drained: {:?}",
            cloud.depth()
        );
        let mut next = worker();
        let (status, _) = wait(&mut next, Duration::from_secs(240));
        assert!(status.success(), "{}", stderr_of(&mut next));
    }
    use std::sync::atomic::Ordering::Relaxed;
    let faults = proxy.stats.answered_503.load(Relaxed)
        + proxy.stats.dropped.load(Relaxed)
        + proxy.stats.cut.load(Relaxed);
    assert!(faults > 0, "no fault was injected: {:?}", proxy.stats);
    assert_all_done(&cloud, &uploads, true);
    // Reprocessing is harmless: every output is exactly what one clean conversion gives.
    let outputs = cloud.outputs();
    let spec = qp::image::ResizeSpec::default();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (key, bytes) in &outputs {
        let name = key.rsplit('/').next().unwrap();
        let source = std::fs::read(root.join("samples").join(name)).unwrap();
        let clean = qp::image::process(&source, &spec).unwrap();
        assert!(
            clean[0].jpeg == *bytes,
            "{key} differs from a clean conversion"
        );
    }
    eprintln!("fault drill: {:?}, {relaunches} relaunches", proxy.stats);
}

#[test]
fn the_same_notification_twice_gives_the_same_output_and_no_error() {
    let cloud = Cloud::create(CloudOptions::default());
    let mut uploads = upload_corpus(&cloud, 1, |_| {});
    uploads.bad.clear();
    // Take every notification and send each a second time: two identical deliveries.
    let bodies: Vec<String> = cloud.rt.block_on(async {
        let mut bodies = Vec::new();
        loop {
            let out = cloud
                .sqs
                .receive_message()
                .queue_url(&cloud.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let body = m.body.unwrap();
                if crate::pipeline::decoded_keys(&body)
                    .iter()
                    .all(|k| !k.starts_with("bad/"))
                {
                    bodies.push(body);
                }
                cloud
                    .sqs
                    .delete_message()
                    .queue_url(&cloud.queue_url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        for body in bodies.iter().chain(bodies.iter()) {
            cloud
                .sqs
                .send_message()
                .queue_url(&cloud.queue_url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        bodies
    });
    assert!(!bodies.is_empty());
    let mut worker = spawn(cloud.worker_command(&[]));
    let (status, _) = wait(&mut worker, Duration::from_secs(120));
    let log = stderr_of(&mut worker);
    assert!(status.success(), "{log}");
    assert_all_done(&cloud, &uploads, true);
    assert!(
        cloud.dlq().is_empty(),
        "a duplicate delivery was treated as a failure"
    );
    assert_eq!(cloud.outputs().len(), uploads.good.len());
}

#[test]
fn the_scaler_invoked_twice_for_one_event_launches_once() {
    let cloud = Cloud::create(CloudOptions::default());
    upload_corpus(&cloud, 5, |_| {});
    let mut lambda = Lambda::start(&cloud, &cloud.scaler_env(10, 10));
    let first = lambda.invoke("5b1c6d2e-duplicate-delivery");
    let launched = cloud.running_tasks().len();
    assert!(first["launch"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(
        launched as u64,
        first["launched"]["total"].as_u64().unwrap(),
        "{first}"
    );
    let second = lambda.invoke("5b1c6d2e-duplicate-delivery");
    assert_eq!(
        cloud.running_tasks().len(),
        launched,
        "second delivery launched: {second}"
    );
}

/// The whole loop the cloud runs, small: scaler ticks, workers for launched tasks, drained,
/// workers exit by themselves, a last tick launches nothing.
#[test]
fn the_local_pipeline_drains_everything() {
    let cloud = Cloud::create(CloudOptions::default());
    let uploads = upload_corpus(&cloud, 3, |_| {});
    let mut lambda = Lambda::start(&cloud, &cloud.scaler_env(4, 5));
    let mut fargate = Fargate::new();
    let report = run_until_drained(
        &cloud,
        &mut lambda,
        &mut fargate,
        Duration::from_secs(3),
        Duration::from_secs(300),
        |_, _, _, _| {},
    );
    assert!(
        fargate.failed_workers().is_empty(),
        "{:?}",
        fargate.failed_workers()
    );
    assert_all_done(&cloud, &uploads, true);
    assert!(report.launched >= 1);
    assert_eq!(report.last_launch, 0);
}
