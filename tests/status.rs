//! `qp status` and `qp redrive` end to end: the real binary against a private moto server.
//!
//! moto has no StartMessageMoveTask, so `qp redrive` takes its receive/send/delete way here (the
//! move task's loop is tested against a fake in src/redrive.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_ecs::types::{AwsVpcConfiguration, CapacityProviderStrategyItem, NetworkConfiguration};
use aws_sdk_sqs::types::MessageAttributeValue;
use serde_json::{Value, json};

use crate::faults::FaultProxy;
use crate::pipeline::{CLUSTER, Cloud, CloudOptions, FAMILY};
use crate::util::{Moto, fixture_bytes, qp, queue_depth, run, stderr, stdout};
use crate::work::{Env, env, run_to_exit};

/// `qp MODE` against this moto's `queue` and `dlq`.
fn command(moto: &Moto, queue: &str, dlq: &str, mode: &str) -> Command {
    let mut cmd = qp();
    moto.configure(&mut cmd);
    cmd.arg(mode)
        .env("QP_QUEUE_URL", queue)
        .env("QP_DLQ_URL", dlq);
    cmd
}

/// `qp redrive ARGS`, through `endpoint` (a fault proxy) if given: its output and JSON report.
fn redrive(env: &Env, args: &[&str], endpoint: Option<String>) -> (Output, Value) {
    let mut cmd = command(&env.moto, &env.queue, &env.dlq, "redrive");
    cmd.args(args);
    if let Some(e) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", e);
    }
    let out = run(&mut cmd);
    let report = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (out, report)
}

/// `qp work` until the queue has stayed empty for 2 s.
fn work(env: &Env, extra: &[(&str, &str)]) {
    let out = run_to_exit(env.worker(extra), Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Sends `body` to `url`, with the attributes the worker gives a failure if `reason` is set.
async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str, reason: Option<&str>, delay: i32) {
    let mut call = sqs
        .send_message()
        .queue_url(url)
        .message_body(body)
        .delay_seconds(delay);
    if let Some(r) = reason {
        for (k, v) in [("qp_reason", r), ("qp_key", body)] {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .unwrap();
            call = call.message_attributes(k, value);
        }
    }
    call.send().await.unwrap();
}

/// The (body, qp_reason) of every message of a queue, sorted (received and hidden).
async fn contents(env: &Env, url: &str) -> Vec<(String, Option<String>)> {
    let mut all: Vec<(String, Option<String>)> = env
        .drain(url)
        .await
        .into_iter()
        .map(|(body, attrs)| (body, attrs.get("qp_reason").cloned()))
        .collect();
    all.sort();
    all
}

/// moto's tasks go from RUNNING straight to STOPPED on their first DescribeTasks (its default
/// "immediate" state progression); a real task stays RUNNING until it exits. Asks moto to keep
/// them RUNNING.
fn keep_tasks_running(moto: &Moto) {
    let body =
        r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#;
    let mut s = TcpStream::connect(("127.0.0.1", moto.port)).unwrap();
    write!(
        s,
        "POST /moto-api/state-manager/set-transition HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 20"), "{answer}");
}

/// Starts `count` worker tasks on each capacity provider of `providers`.
async fn launch_tasks(cloud: &Cloud, providers: &[(&str, i32)]) {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(cloud.subnets.clone()))
        .security_groups(&cloud.security_group)
        .build()
        .unwrap();
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build();
    for &(provider, count) in providers {
        let strategy = CapacityProviderStrategyItem::builder()
            .capacity_provider(provider)
            .weight(1)
            .build()
            .unwrap();
        let out = cloud
            .ecs
            .run_task()
            .cluster(CLUSTER)
            .task_definition(FAMILY)
            .count(count)
            .capacity_provider_strategy(strategy)
            .network_configuration(network.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(out.tasks().len(), count as usize, "{out:?}");
    }
}

fn n(v: u64) -> Value {
    Value::from(v)
}

#[test]
fn status_counts_queue_dlq_and_tasks_and_leaves_the_dlq_as_it_was() {
    // The deployment in moto; its queue already holds the s3:TestEvent of the notification.
    let cloud = Cloud::create(CloudOptions::default());
    keep_tasks_running(&cloud.moto);
    let (queue, dlq) = (cloud.queue_url.as_str(), cloud.dlq_url.as_str());
    let dead = [
        ("a.jpg", "not_image"),
        ("b.jpg", "truncated"),
        ("c.jpg", "not_image"),
    ];
    cloud.rt.block_on(async {
        launch_tasks(&cloud, &[("FARGATE_SPOT", 2), ("FARGATE", 1)]).await;
        for i in 0..6 {
            send(&cloud.sqs, queue, &format!("m{i}"), None, 0).await;
        }
        send(&cloud.sqs, queue, "later", None, 600).await;
        // Two received and not deleted: in flight.
        let held = cloud
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(2)
            .visibility_timeout(600)
            .send()
            .await
            .unwrap();
        assert_eq!(held.messages().len(), 2);
        for (key, reason) in dead {
            send(&cloud.sqs, dlq, key, Some(reason), 0).await;
        }
    });

    let status = |extra: &[(&str, &str)]| -> Value {
        let mut cmd = command(&cloud.moto, queue, dlq, "status");
        cmd.env("QP_CLUSTER", CLUSTER)
            .env("QP_TASK_DEFINITION", format!("{FAMILY}:1"));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
        serde_json::from_str(&text).unwrap()
    };
    let s = status(&[("QP_MESSAGES_PER_TASK", "2")]);

    let q = &s["queue"];
    assert_eq!(
        (&q["visible"], &q["in_flight"], &q["delayed"]),
        (&n(5), &n(2), &n(1)),
        "{s}"
    );
    assert!(q["oldest_age_secs"].is_null(), "{s}");
    let note = q["oldest_age_note"].as_str().unwrap();
    assert!(note.contains("ApproximateAgeOfOldestMessage"), "{s}");

    let d = &s["dlq"];
    assert_eq!(
        (&d["messages"], &d["in_flight"], &d["sampled"]),
        (&n(3), &n(0), &n(3)),
        "{s}"
    );
    assert_eq!(d["reasons"], json!({"not_image": 2, "truncated": 1}), "{s}");
    let mut keys: Vec<&str> = d["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["a.jpg", "b.jpg", "c.jpg"]);

    let t = &s["tasks"];
    assert_eq!(
        (&t["total"], &t["running"], &t["pending"]),
        (&n(3), &n(3), &n(0)),
        "{s}"
    );
    assert_eq!(
        t["by_capacity_provider"],
        json!({"FARGATE": {"running": 1, "pending": 0}, "FARGATE_SPOT": {"running": 2, "pending": 0}}),
        "{s}"
    );

    // Backlog 5 visible + 2 in flight at 2 a task: 4 desired, 3 running, 1 to launch.
    let sc = &s["scaler"];
    assert_eq!(
        (
            &sc["backlog"],
            &sc["running"],
            &sc["desired"],
            &sc["launch"]
        ),
        (&n(7), &n(3), &n(4), &n(1)),
        "{s}"
    );

    // Nothing was consumed: the DLQ holds the same three messages, all visible.
    assert_eq!(cloud.rt.block_on(queue_depth(&cloud.sqs, dlq)), (3, 0));
    let mut left: Vec<(String, String)> = cloud
        .dlq()
        .into_iter()
        .map(|(body, attrs)| (body, attrs["qp_reason"].clone()))
        .collect();
    left.sort();
    let expected: Vec<(String, String)> = dead
        .iter()
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect();
    assert_eq!(left, expected);

    // Without the DLQ setting its part is null; the rest stands.
    let mut cmd = command(&cloud.moto, queue, dlq, "status");
    cmd.env_remove("QP_DLQ_URL")
        .env("QP_CLUSTER", CLUSTER)
        .env("QP_TASK_DEFINITION", FAMILY);
    let out = run(&mut cmd);
    let s: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(s["dlq"].is_null() && s["queue"]["visible"] == 5, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_by_reason_after_a_fix_moves_only_those_and_work_processes_them() {
    let env = env(30, true).await;
    let good = [
        "tiny_1x1.jpg",
        "grayscale.jpg",
        "progressive.jpg",
        "baseline_420.jpg",
    ];
    let bad = ["bad_text.jpg", "bad_empty.jpg"];
    for name in good.iter().chain(&bad) {
        env.upload(&format!("in/{name}"), fixture_bytes(name)).await;
    }
    // The "bug": a limit below every good image's size (not the bad ones'). All six land in
    // the DLQ, the good ones as object_too_large.
    work(&env, &[("QP_MAX_OBJECT_BYTES", "5000")]);
    assert!(env.dest_keys().await.is_empty());
    assert_eq!(env.depth(&env.dlq).await, (6, 0));

    let (out, r) = redrive(&env, &["--reason", "object_too_large"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(r["method"], "batch", "{r}");
    assert_eq!((&r["moved"], &r["skipped"]), (&n(4), &n(2)), "{r}");
    assert_eq!(
        (&r["send_failed"], &r["delete_failed"]),
        (&n(0), &n(0)),
        "{r}"
    );
    // The others were held while the DLQ was read and are visible again at once.
    assert_eq!(env.depth(&env.dlq).await, (2, 0));
    assert_eq!(env.depth(&env.queue).await, (4, 0));

    // The fix: the default limit. Every redriven image is processed.
    work(&env, &[]);
    let expected: BTreeSet<String> = good.iter().map(|g| format!("processed/in/{g}")).collect();
    assert_eq!(env.dest_keys().await, expected);
    assert_eq!(env.depth(&env.queue).await, (0, 0));
    let left: Vec<Option<String>> = contents(&env, &env.dlq)
        .await
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(left, [Some("not_image".into()), Some("not_image".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_loses_nothing_when_sends_or_deletes_fail() {
    let env = env(30, false).await;
    let count = 13;
    let mut bodies: Vec<String> = (0..count).map(|i| format!("message {i}")).collect();
    bodies.sort();
    for b in &bodies {
        send(&env.sqs, &env.dlq, b, Some("object_gone"), 0).await;
    }
    let upstream = env.moto.addr();
    let args = ["--method", "batch", "--hold-secs", "3"];

    // Every send refused: nothing may leave the DLQ.
    let sends = FaultProxy::start_only(upstream, "AmazonSQS.SendMessageBatch").await;
    sends.set_failing(true);
    let (out, r) = redrive(&env, &args, Some(sends.endpoint()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!((&r["moved"], &r["send_failed"]), (&n(0), &n(count)), "{r}");
    assert_eq!(env.depth(&env.queue).await, (0, 0));
    assert_eq!(env.depth(&env.dlq).await, (count, 0), "released at once");

    // Every delete refused after the sends went through: copies in both queues, none lost.
    let deletes = FaultProxy::start_only(upstream, "AmazonSQS.DeleteMessageBatch").await;
    deletes.set_failing(true);
    let (out, r) = redrive(&env, &args, Some(deletes.endpoint()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        (&r["moved"], &r["delete_failed"]),
        (&n(0), &n(count)),
        "{r}"
    );
    assert!(deletes.stats.answered_503.load(Ordering::Relaxed) > 0);
    assert_eq!(env.depth(&env.queue).await.0, count);
    // The held copies come back to the DLQ when their hold ends.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(env.depth(&env.dlq).await, (count, 0));

    // No fault, the default method: moto refuses StartMessageMoveTask, so qp says so and moves
    // by receive/send/delete. The queue has every body twice, with its attributes.
    let (out, r) = redrive(&env, &["--hold-secs", "3"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(r["method"], "batch", "{r}");
    assert!(
        r["note"].as_str().unwrap().contains("StartMessageMoveTask"),
        "{r}"
    );
    assert_eq!(r["moved"], count, "{r}");
    assert_eq!(env.depth(&env.dlq).await, (0, 0));
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for (body, reason) in contents(&env, &env.queue).await {
        assert_eq!(reason.as_deref(), Some("object_gone"), "{body}");
        *copies.entry(body).or_default() += 1;
    }
    assert_eq!(
        copies.keys().cloned().collect::<Vec<_>>(),
        bodies,
        "{copies:?}"
    );
    assert!(
        copies.values().all(|&c| c == 2),
        "one copy per failed delete: {copies:?}"
    );
}
