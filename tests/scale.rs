//! `qp scale` end to end against a private moto server: the real binary, as a CLI and copied as
//! `bootstrap` under the mock Lambda Runtime API.
//!
//! ECS calls go through a small recording proxy in front of moto. It lets the tests see every
//! RunTask request (chunking, client tokens, network configuration), and it pages ListTasks
//! itself, because moto ignores `maxResults` and returns every task in one page.

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerDefinition,
    NetworkConfiguration, NetworkMode, TaskField,
};
use serde_json::{Value, json};

use crate::lambda_api::{LambdaApi, Response, read_request, read_response, write_response};
use crate::util::{Moto, qp, qp_binary, run, stderr, stdout, tempdir};

const CLUSTER: &str = "qp";
const FAMILY: &str = "qp-worker";
const CONTAINER: &str = "worker";

/// Records every ECS call (operation, JSON body) and forwards it to moto, paging ListTasks.
struct EcsProxy {
    endpoint: String,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

impl EcsProxy {
    fn start(moto_port: u16) -> EcsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let calls = recorded.clone();
                std::thread::spawn(move || proxy(stream, moto_port, &calls));
            }
        });
        EcsProxy { endpoint, calls }
    }

    /// Bodies of the calls to one operation, in order.
    fn calls(&self, op: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn proxy(stream: TcpStream, moto_port: u16, calls: &Mutex<Vec<(String, Value)>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Ok(Some(req)) = read_request(&mut reader) {
        let op = req
            .header("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("")
            .to_owned();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        calls.lock().unwrap().push((op.clone(), body.clone()));
        let Response {
            status,
            headers,
            body: mut out,
        } = if op == "ListTasks" {
            let max = body["maxResults"].as_u64().unwrap_or(100) as usize;
            let offset: usize = body["nextToken"].as_str().map_or(0, |t| t.parse().unwrap());
            let mut all = body.clone();
            all.as_object_mut()
                .unwrap()
                .retain(|k, _| k != "maxResults" && k != "nextToken");
            let all = forward(moto_port, &req, all.to_string().as_bytes());
            let arns: Vec<Value> = serde_json::from_slice::<Value>(&all.body).unwrap()["taskArns"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let end = (offset + max).min(arns.len());
            let mut page = json!({"taskArns": arns[offset.min(end)..end]});
            if end < arns.len() {
                page["nextToken"] = json!(end.to_string());
            }
            Response {
                body: page.to_string().into_bytes(),
                ..all
            }
        } else {
            forward(moto_port, &req, &req.body)
        };
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map_or("application/x-amz-json-1.1".to_owned(), |(_, v)| v.clone());
        if out.is_empty() && status != 200 {
            out = b"{}".to_vec();
        }
        if write_response(
            &mut writer,
            status,
            &[("Content-Type", &content_type)],
            &out,
        )
        .is_err()
        {
            break;
        }
    }
}

fn forward(moto_port: u16, req: &crate::lambda_api::Request, body: &[u8]) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", moto_port)).unwrap();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{moto_port}\r\n",
        req.method, req.path
    );
    for (k, v) in &req.headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    std::io::Write::write_all(&mut s, head.as_bytes()).unwrap();
    std::io::Write::write_all(&mut s, body).unwrap();
    read_response(&mut BufReader::new(s)).unwrap()
}

/// moto with what `qp scale` needs: a VPC (DNS hostnames on), two subnets, a security group, a
/// cluster with the Fargate capacity providers, an awsvpc task definition, and a queue.
struct World {
    rt: tokio::runtime::Runtime,
    proxy: EcsProxy,
    ecs: aws_sdk_ecs::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    subnets: Vec<String>,
    security_group: String,
    task_definition_arn: String,
    moto: Moto,
}

impl World {
    fn new(messages: usize) -> World {
        let moto = Moto::start();
        let crate::util::Network {
            subnets,
            security_group,
        } = crate::util::network(&moto);

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ecs, sqs) = rt.block_on(async { (moto.ecs().await, moto.sqs().await) });
        let (task_definition_arn, queue_url) = rt.block_on(async {
            let arn = crate::util::create_worker_cluster(
                &ecs,
                CLUSTER,
                FAMILY,
                ("256", "512"),
                ContainerDefinition::builder()
                    .name(CONTAINER)
                    .image("qp:latest")
                    .memory(512)
                    .build(),
            )
            .await;
            let url = sqs
                .create_queue()
                .queue_name("uploads")
                .send()
                .await
                .unwrap()
                .queue_url()
                .unwrap()
                .to_owned();
            (arn, url)
        });
        let proxy = EcsProxy::start(moto.port);
        let world = World {
            rt,
            proxy,
            ecs,
            sqs,
            queue_url,
            subnets,
            security_group,
            task_definition_arn,
            moto,
        };
        world.send(messages);
        world
    }

    fn send(&self, n: usize) {
        self.rt.block_on(async {
            for start in (0..n).step_by(10) {
                let mut batch = self.sqs.send_message_batch().queue_url(&self.queue_url);
                for i in start..n.min(start + 10) {
                    batch = batch.entries(
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id(format!("m{i}"))
                            .message_body(format!("{{\"n\":{i}}}"))
                            .build()
                            .unwrap(),
                    );
                }
                batch.send().await.unwrap();
            }
        });
    }

    /// Our tasks with desired status RUNNING, asked of moto directly.
    fn running(&self) -> Vec<String> {
        self.rt.block_on(async {
            let out = self
                .ecs
                .list_tasks()
                .cluster(CLUSTER)
                .family(FAMILY)
                .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
                .send()
                .await
                .unwrap();
            out.task_arns().to_vec()
        })
    }

    /// `cmd` configured for this world: moto, the ECS proxy, and every required QP_* variable.
    fn configure(&self, cmd: &mut Command) {
        self.moto.configure(cmd);
        cmd.env("AWS_ENDPOINT_URL_ECS", &self.proxy.endpoint)
            .env("QP_QUEUE_URL", &self.queue_url)
            .env("QP_CLUSTER", CLUSTER)
            .env("QP_TASK_DEFINITION", format!("{FAMILY}:1"))
            .env("QP_CONTAINER_NAME", CONTAINER)
            .env("QP_SUBNETS", self.subnets.join(","))
            .env("QP_SECURITY_GROUPS", &self.security_group)
            .env("QP_LOG_FORMAT", "text");
    }

    fn scale(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = qp();
        self.configure(&mut cmd);
        cmd.arg("scale").args(args).envs(env.iter().copied());
        run(&mut cmd)
    }

    /// Runs `qp scale`, expects success and one JSON object on stdout.
    fn tick(&self, env: &[(&str, &str)], args: &[&str]) -> Value {
        let out = self.scale(env, args);
        assert!(
            out.status.success(),
            "qp scale failed: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 1, "one JSON line expected: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// visible, in_flight, running, desired, launch, launched.total
fn counts(report: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = ["visible", "in_flight", "running", "desired", "launch"]
        .iter()
        .map(|k| {
            report[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k} in {report}"))
        })
        .collect();
    v.push(
        report["launched"]["total"]
            .as_u64()
            .unwrap_or_else(|| panic!("launched.total in {report}")),
    );
    v
}

#[test]
fn dry_run_plans_a_tick_launches_the_next_rests() {
    let w = World::new(35);

    let plan = w.tick(&[], &["--dry-run", "--event-id", "ev-1"]);
    // visible, in_flight, running, desired, launch, launched
    assert_eq!(counts(&plan), [35, 0, 0, 4, 4, 0], "{plan}");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["delayed"], 0);
    assert_eq!(plan["event_id"], "ev-1");
    assert!(w.running().is_empty());
    assert!(w.proxy.calls("RunTask").is_empty());

    let env = [
        ("QP_TASK_ENV", "QP_MODE=fit,QP_QUALITY=85"),
        ("QP_CAPACITY", "FARGATE:1:base=1,FARGATE_SPOT:4"),
        ("QP_ASSIGN_PUBLIC_IP", "true"),
    ];
    let tick = w.tick(&env, &["--event-id", "ev-1"]);
    assert_eq!(counts(&tick), [35, 0, 0, 4, 4, 4], "{tick}");
    assert_eq!(tick["dry_run"], false);
    assert_eq!(tick["failures"], json!([]));
    assert_eq!(tick["run_task_calls"], 1);
    let by_provider: u64 = tick["launched"]["by_capacity_provider"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_provider, 4, "{tick}");
    let running = w.running();
    assert_eq!(running.len(), 4);
    let mut arns: Vec<&str> = tick["launched"]["task_arns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    arns.sort();
    let mut listed: Vec<&str> = running.iter().map(String::as_str).collect();
    listed.sort();
    assert_eq!(arns, listed);

    // What RunTask was asked.
    let calls = w.proxy.calls("RunTask");
    assert_eq!(calls.len(), 1);
    let req = &calls[0];
    assert_eq!(req["count"], 4);
    assert_eq!(req["cluster"], CLUSTER);
    assert_eq!(req["taskDefinition"], "qp-worker:1");
    assert_eq!(req["startedBy"], "qp-scale");
    let vpc = &req["networkConfiguration"]["awsvpcConfiguration"];
    assert_eq!(vpc["subnets"], json!(w.subnets));
    assert_eq!(vpc["securityGroups"], json!([w.security_group]));
    assert_eq!(vpc["assignPublicIp"], "ENABLED");
    assert_eq!(
        req["capacityProviderStrategy"],
        json!([
            {"capacityProvider": "FARGATE", "weight": 1, "base": 1},
            {"capacityProvider": "FARGATE_SPOT", "weight": 4}
        ])
    );
    let token = req["clientToken"].as_str().unwrap();
    assert!(token.len() <= 64 && token.starts_with("qp-"), "{token}");

    // What ECS (moto) recorded on the tasks.
    let tasks = w.rt.block_on(async {
        w.ecs
            .describe_tasks()
            .cluster(CLUSTER)
            .set_tasks(Some(running.clone()))
            .include(TaskField::Tags)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(tasks.tasks().len(), 4);
    for t in tasks.tasks() {
        assert_eq!(t.started_by(), Some("qp-scale"));
        assert_eq!(
            t.task_definition_arn(),
            Some(w.task_definition_arn.as_str())
        );
        let o = &t.overrides().unwrap().container_overrides()[0];
        assert_eq!(o.name(), Some(CONTAINER));
        let env: Vec<(&str, &str)> = o
            .environment()
            .iter()
            .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
            .collect();
        assert_eq!(env, [("QP_MODE", "fit"), ("QP_QUALITY", "85")]);
        let tags: Vec<(&str, &str)> = t
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert!(tags.contains(&("qp:event-id", "ev-1")), "{tags:?}");
        assert!(tags.contains(&("qp:launched-by", "qp-scale")), "{tags:?}");
    }

    // The next tick finds the four running and launches nothing.
    let next = w.tick(&env, &["--event-id", "ev-2"]);
    assert_eq!(counts(&next), [35, 0, 4, 4, 0, 0], "{next}");
    assert!(
        next["reason"]
            .as_str()
            .unwrap()
            .contains("nothing to launch"),
        "{next}"
    );
    assert_eq!(w.proxy.calls("RunTask").len(), 1);
    assert_eq!(w.running().len(), 4);
}

#[test]
fn max_tasks_and_the_per_run_cap_bound_the_launch() {
    let w = World::new(30);
    let one_each = ("QP_MESSAGES_PER_TASK", "1");
    let r = w.tick(&[one_each, ("QP_MAX_TASKS", "5")], &["--event-id", "a"]);
    assert_eq!(counts(&r), [30, 0, 0, 5, 5, 5], "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("capped at QP_MAX_TASKS=5"),
        "{r}"
    );

    let r = w.tick(
        &[
            one_each,
            ("QP_MAX_TASKS", "20"),
            ("QP_MAX_LAUNCH_PER_RUN", "3"),
        ],
        &["--event-id", "b"],
    );
    assert_eq!(counts(&r), [30, 0, 5, 20, 3, 3], "{r}");
    assert_eq!(w.running().len(), 8);
}

#[test]
fn the_off_switch_reports_but_never_launches() {
    let w = World::new(35);
    let r = w.tick(&[("QP_ENABLED", "false")], &["--event-id", "a"]);
    assert_eq!(counts(&r), [35, 0, 0, 4, 0, 0], "{r}");
    assert_eq!(r["enabled"], false);
    assert!(
        r["reason"].as_str().unwrap().contains("QP_ENABLED=false"),
        "{r}"
    );
    assert!(w.proxy.calls("RunTask").is_empty());
    assert!(w.running().is_empty());

    // An AWS failure is exit 1 with the service's message.
    let out = w.scale(
        &[("QP_QUEUE_URL", &format!("{}-missing", w.queue_url))],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("uploads-missing"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn more_than_ten_tasks_take_several_run_task_calls() {
    let w = World::new(25);
    let r = w.tick(
        &[("QP_MESSAGES_PER_TASK", "1"), ("QP_MAX_TASKS", "100")],
        &["--event-id", "big"],
    );
    assert_eq!(counts(&r), [25, 0, 0, 25, 25, 25], "{r}");
    assert_eq!(r["run_task_calls"], 3);
    let calls = w.proxy.calls("RunTask");
    let sizes: Vec<u64> = calls.iter().map(|c| c["count"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let mut tokens: Vec<&str> = calls
        .iter()
        .map(|c| c["clientToken"].as_str().unwrap())
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "one token per call");
    assert_eq!(w.running().len(), 25);
}

#[test]
fn running_tasks_are_counted_over_every_page() {
    let w = World::new(0);
    // 137 worker tasks started by someone else, and one task of another family that must not count.
    w.rt.block_on(async {
        let vpc = AwsVpcConfiguration::builder()
            .subnets(&w.subnets[0])
            .security_groups(&w.security_group)
            .assign_public_ip(AssignPublicIp::Disabled)
            .build()
            .unwrap();
        let network = NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build();
        w.ecs
            .register_task_definition()
            .family("other")
            .network_mode(NetworkMode::Awsvpc)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("o")
                    .image("o")
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for (family, count) in [(FAMILY, 137), ("other", 1)] {
            w.ecs
                .run_task()
                .cluster(CLUSTER)
                .task_definition(family)
                .count(count)
                .capacity_provider_strategy(
                    CapacityProviderStrategyItem::builder()
                        .capacity_provider("FARGATE")
                        .weight(1)
                        .build()
                        .unwrap(),
                )
                .network_configuration(network.clone())
                .send()
                .await
                .unwrap();
        }
    });
    w.proxy.calls.lock().unwrap().clear();
    let arn = w.task_definition_arn.clone();
    let r = w.tick(&[("QP_TASK_DEFINITION", &arn)], &["--dry-run"]);
    assert_eq!(counts(&r), [0, 0, 137, 0, 0, 0], "{r}");
    assert!(r["event_id"].as_str().unwrap().starts_with("cli-"), "{r}");
    let pages = w.proxy.calls("ListTasks");
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(pages[0]["family"], FAMILY);
    assert_eq!(pages[0]["desiredStatus"], "RUNNING");
    assert_eq!(pages[0]["maxResults"], 100);
    assert_eq!(pages[1]["nextToken"], "100");
}

#[test]
fn config_errors_name_the_variable() {
    let good = [
        ("QP_QUEUE_URL", "http://localhost/1/q"),
        ("QP_CLUSTER", "qp"),
        ("QP_TASK_DEFINITION", "qp-worker"),
        ("QP_CONTAINER_NAME", "worker"),
        ("QP_SUBNETS", "subnet-1"),
        ("QP_SECURITY_GROUPS", "sg-1"),
    ];
    let cases: &[(&str, &str)] = &[
        ("QP_QUEUE_URL", ""),
        ("QP_SUBNETS", ""),
        ("QP_TASK_DEFINITION", "arn:aws:ecs:us-east-1:1:cluster/qp"),
        ("QP_CAPACITY", "FARGATE_SPOT"),
        ("QP_CAPACITY", "FARGATE:1:base=1,FARGATE_SPOT:1:base=1"),
        ("QP_TASK_ENV", "QP_SIZES=224x224,299x299"),
        ("QP_MESSAGES_PER_TASK", "0"),
        ("QP_MAX_TASKS", "lots"),
        ("QP_ENABLED", "maybe"),
    ];
    for (var, value) in cases {
        let mut cmd = qp();
        cmd.arg("scale").envs(good).env(var, value);
        let out = run(&mut cmd);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{var}={value}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(var),
            "{var}={value}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
    let out = run(qp().arg("scale").arg("--dry-run"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("QP_QUEUE_URL"), "{}", stderr(&out));
}

/// A running `bootstrap`, killed when the test ends, whether its assertions passed or not.
struct Running(std::process::Child);

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary under the name Lambda executes.
fn bootstrap() -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let path = dir.path().join("bootstrap");
    std::fs::copy(qp_binary(), &path).unwrap();
    (dir, path)
}

fn scheduled_event(id: &str) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2024-05-01T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/qp-scale"],
        "detail": {}
    })
}

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn bootstrap_answers_scheduled_events_once_per_event() {
    let w = World::new(35);
    let (_dir, bootstrap) = bootstrap();
    let api = LambdaApi::start(vec![scheduled_event("e-1")]);
    let mut cmd = Command::new(&bootstrap);
    w.configure(&mut cmd);
    api.configure(&mut cmd);
    cmd.env("QP_TASK_DEFINITION", &w.task_definition_arn)
        .env("QP_LOG_FORMAT", "json");
    let child = Running::spawn(&mut cmd);

    assert!(
        api.wait_for_results(1, WAIT),
        "no answer to the first event"
    );
    let first = api.responses()[0].body.clone();
    assert_eq!(counts(&first), [35, 0, 0, 4, 4, 4], "{first}");
    assert_eq!(first["event_id"], "e-1");
    assert_eq!(api.responses()[0].request_id, "req-1");

    // The queue doubles, then EventBridge delivers e-1 again: it must not launch again.
    w.send(40);
    api.push(scheduled_event("e-1"));
    assert!(
        api.wait_for_results(2, WAIT),
        "no answer to the repeated event"
    );
    let again = api.responses()[1].body.clone();
    assert_eq!(counts(&again), [75, 0, 4, 8, 0, 0], "{again}");
    assert!(
        again["reason"]
            .as_str()
            .unwrap()
            .contains("already launched 4"),
        "{again}"
    );

    // The next event does launch for the larger queue.
    api.push(scheduled_event("e-2"));
    assert!(api.wait_for_results(3, WAIT), "no answer to the next event");
    let next = api.responses()[2].body.clone();
    assert_eq!(counts(&next), [75, 0, 4, 8, 4, 4], "{next}");
    assert!(api.errors().is_empty(), "{:?}", api.errors());
    assert!(api.init_errors().is_empty());
    drop(child);
    assert_eq!(w.running().len(), 8);
    assert_eq!(w.proxy.calls("RunTask").len(), 2);
}

/// Runs the executable at `bootstrap` the way Lambda does (from its own directory, under the
/// Runtime API) through one scheduled event against a fresh world, and checks the tick launched
/// what the queue needs. The packaging test drives the unzipped Lambda package through this.
pub(crate) fn drive_bootstrap_through_one_scheduled_event(bootstrap: &std::path::Path) {
    let w = World::new(25);
    let api = LambdaApi::start(vec![scheduled_event("e-zip")]);
    let mut cmd = Command::new(bootstrap);
    w.configure(&mut cmd);
    api.configure(&mut cmd);
    cmd.current_dir(bootstrap.parent().unwrap())
        .env("QP_LOG_FORMAT", "json");
    let child = Running::spawn(&mut cmd);
    assert!(api.wait_for_results(1, WAIT), "no answer to the event");
    drop(child);
    assert!(api.errors().is_empty(), "{:?}", api.errors());
    assert!(api.init_errors().is_empty(), "{:?}", api.init_errors());
    let report = api.responses()[0].body.clone();
    assert_eq!(counts(&report), [25, 0, 0, 3, 3, 3], "{report}");
    assert_eq!(report["event_id"], "e-zip");
    assert_eq!(w.running().len(), 3);
}

#[test]
fn bootstrap_reports_aws_errors_per_invocation() {
    let w = World::new(5);
    let (_dir, bootstrap) = bootstrap();
    let api = LambdaApi::start(vec![scheduled_event("e-1"), scheduled_event("e-2")]);
    let mut cmd = Command::new(&bootstrap);
    w.configure(&mut cmd);
    api.configure(&mut cmd);
    cmd.env("QP_CLUSTER", "no-such-cluster");
    let child = Running::spawn(&mut cmd);
    let answered = api.wait_for_results(2, WAIT);
    drop(child);
    assert!(answered, "the runtime must survive a failed invocation");
    let errors = api.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].request_id, "req-1");
    assert_eq!(errors[0].body["errorType"], "qp.AwsError");
    let message = errors[0].body["errorMessage"].as_str().unwrap();
    assert!(message.contains("no-such-cluster"), "{message}");
    assert!(api.responses().is_empty());
}

#[test]
fn bootstrap_reports_a_config_error_as_an_init_error() {
    let (_dir, bootstrap) = bootstrap();
    let api = LambdaApi::start(vec![scheduled_event("e-1")]);
    let mut cmd = Command::new(&bootstrap);
    crate::util::clean_env(&mut cmd);
    api.configure(&mut cmd);
    cmd.env("QP_CLUSTER", "qp")
        .env("QP_CAPACITY", "FARGATE_SPOT:lots");
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let init = api.init_errors();
    assert_eq!(init.len(), 1, "{}", stderr(&out));
    assert_eq!(init[0].error_type.as_deref(), Some("Runtime.InitError"));
    assert_eq!(init[0].body["errorType"], "qp.ConfigError");
    let message = init[0].body["errorMessage"].as_str().unwrap();
    assert!(message.contains("QP_QUEUE_URL"), "{message}");
    assert_eq!(
        api.next_calls(),
        0,
        "no event may be taken after a failed init"
    );
    assert!(api.responses().is_empty() && api.errors().is_empty());
}
