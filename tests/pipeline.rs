//! The whole pipeline on one machine: moto stands in for AWS, the mock Runtime API for Lambda,
//! and this harness for Fargate (it starts a `qp work` process for every task the scaler
//! launched, with that task's environment, and stops the task when the process exits).
//!
//! Used by `scripts/local-pipeline` (through `tests/local_pipeline.rs`) and by the drills.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    ContainerDefinition, DesiredStatus, KeyValuePair, LogConfiguration, LogDriver,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use crate::lambda_api::LambdaApi;
use crate::util::{Moto, clean_env, qp_binary, queue_arn};

pub const CLUSTER: &str = "qp";
pub const FAMILY: &str = "qp-worker";
pub const CONTAINER: &str = "worker";
pub const SOURCE: &str = "qp-source";
pub const DEST: &str = "qp-destination";
pub const PREFIX: &str = "processed";

/// Knobs of the simulated deployment.
#[derive(Clone, Debug)]
pub struct CloudOptions {
    /// The queue's visibility timeout.
    pub visibility_timeout: u32,
    /// Receives before the queue's redrive policy moves a message to the DLQ.
    pub max_receive_count: u32,
    /// `QP_IDLE_TIMEOUT_SECS` of the workers.
    pub idle_timeout: u32,
    /// Whether workers get `QP_DLQ_URL` (else poison messages take the redrive path).
    pub worker_dlq: bool,
    /// Extra variables of the worker task definition.
    pub worker_env: Vec<(String, String)>,
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions {
            visibility_timeout: 30,
            max_receive_count: 3,
            idle_timeout: 4,
            worker_dlq: true,
            worker_env: Vec::new(),
        }
    }
}

/// The resources terraform creates, in moto: buckets with the notification, queue and DLQ with
/// a redrive policy, VPC with two subnets and a security group, cluster with both Fargate
/// capacity providers, and the worker task definition with its `QP_*` environment.
pub struct Cloud {
    pub rt: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub subnets: Vec<String>,
    pub security_group: String,
    pub options: CloudOptions,
    pub moto: Moto,
}

impl Cloud {
    pub fn create(options: CloudOptions) -> Cloud {
        let moto = Moto::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (s3, sqs, ecs) =
            rt.block_on(async { (moto.s3().await, moto.sqs().await, moto.ecs().await) });

        let crate::util::Network {
            subnets,
            security_group,
        } = crate::util::network(&moto);

        let (queue_url, dlq_url) = rt.block_on(async {
            let dlq_url = sqs
                .create_queue()
                .queue_name("qp-uploads-dlq")
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let dlq_arn = queue_arn(&sqs, &dlq_url).await;
            let redrive = json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": options.max_receive_count.to_string(),
            });
            let queue_url = sqs
                .create_queue()
                .queue_name("qp-uploads")
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    options.visibility_timeout.to_string(),
                )
                .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20")
                .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let queue_arn = queue_arn(&sqs, &queue_url).await;
            for bucket in [SOURCE, DEST] {
                s3.create_bucket().bucket(bucket).send().await.unwrap();
            }
            crate::util::notify_queue(&s3, SOURCE, queue_arn).await;
            (queue_url, dlq_url)
        });

        let cloud = Cloud {
            rt,
            s3,
            sqs,
            ecs,
            queue_url,
            dlq_url,
            subnets,
            security_group,
            options,
            moto,
        };
        // The s3:TestEvent that setting the notification sends is part of the traffic workers see.
        cloud.register_cluster_and_task_definition();
        cloud
    }

    fn register_cluster_and_task_definition(&self) {
        let env = self.worker_task_env();
        self.rt.block_on(async {
            let mut container = ContainerDefinition::builder()
                .name(CONTAINER)
                .image("qp:local")
                .memory(2048)
                .entry_point("/qp")
                .command("work")
                .log_configuration(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Awslogs)
                        .build()
                        .unwrap(),
                );
            for (k, v) in env {
                container = container.environment(KeyValuePair::builder().name(k).value(v).build());
            }
            crate::util::create_worker_cluster(
                &self.ecs,
                CLUSTER,
                FAMILY,
                ("1024", "2048"),
                container.build(),
            )
            .await;
        });
    }

    /// The worker's environment as the terraform task definition sets it.
    pub fn worker_task_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("QP_QUEUE_URL".into(), self.queue_url.clone()),
            ("QP_DEST_BUCKET".into(), DEST.into()),
            ("QP_DEST_PREFIX".into(), PREFIX.into()),
            ("QP_SIZES".into(), "224x224".into()),
            (
                "QP_IDLE_TIMEOUT_SECS".into(),
                self.options.idle_timeout.to_string(),
            ),
            ("QP_SHUTDOWN_GRACE_SECS".into(), "20".into()),
            ("QP_LOG_FORMAT".into(), "json".into()),
            ("QP_S3_FORCE_PATH_STYLE".into(), "true".into()),
        ];
        if self.options.worker_dlq {
            env.push(("QP_DLQ_URL".into(), self.dlq_url.clone()));
        }
        env.extend(self.options.worker_env.iter().cloned());
        env
    }

    /// The scaler's environment as the terraform Lambda sets it.
    pub fn scaler_env(&self, max_tasks: u32, messages_per_task: u32) -> Vec<(String, String)> {
        vec![
            ("QP_QUEUE_URL".into(), self.queue_url.clone()),
            ("QP_CLUSTER".into(), CLUSTER.into()),
            ("QP_TASK_DEFINITION".into(), FAMILY.into()),
            ("QP_CONTAINER_NAME".into(), CONTAINER.into()),
            ("QP_SUBNETS".into(), self.subnets.join(",")),
            ("QP_SECURITY_GROUPS".into(), self.security_group.clone()),
            (
                "QP_CAPACITY".into(),
                "FARGATE:1:base=1,FARGATE_SPOT:4".into(),
            ),
            ("QP_MAX_TASKS".into(), max_tasks.to_string()),
            ("QP_MESSAGES_PER_TASK".into(), messages_per_task.to_string()),
            ("QP_TASK_ENV".into(), "QP_LOG_FORMAT=json".into()),
            ("QP_LOG_FORMAT".into(), "json".into()),
        ]
    }

    /// A `qp work` command as a task would run it: definition environment, then the task's
    /// overrides, then the local AWS endpoint.
    pub fn worker_command(&self, overrides: &[(String, String)]) -> Command {
        let mut cmd = Command::new(qp_binary());
        cmd.arg("work");
        self.moto.configure(&mut cmd);
        for (k, v) in self.worker_task_env().iter().chain(overrides) {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn upload(&self, key: &str, body: Vec<u8>) {
        self.rt.block_on(async {
            self.s3
                .put_object()
                .bucket(SOURCE)
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap_or_else(|e| panic!("uploading {key}: {e:?}"));
        });
    }

    /// (visible, in flight) on the main queue.
    pub fn depth(&self) -> (u64, u64) {
        self.rt
            .block_on(crate::util::queue_depth(&self.sqs, &self.queue_url))
    }

    /// Every message in the DLQ (received and left there): body and string attributes.
    pub fn dlq(&self) -> Vec<(String, HashMap<String, String>)> {
        self.rt.block_on(async {
            let mut seen: BTreeMap<String, (String, HashMap<String, String>)> = BTreeMap::new();
            for _ in 0..20 {
                let out = self
                    .sqs
                    .receive_message()
                    .queue_url(&self.dlq_url)
                    .max_number_of_messages(10)
                    .visibility_timeout(0)
                    .message_attribute_names("All")
                    .send()
                    .await
                    .unwrap();
                let messages = out.messages.unwrap_or_default();
                let before = seen.len();
                for m in messages {
                    let attrs = m
                        .message_attributes
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                        .collect();
                    seen.insert(
                        m.message_id.unwrap_or_default(),
                        (m.body.unwrap_or_default(), attrs),
                    );
                }
                if seen.len() == before {
                    break;
                }
            }
            seen.into_values().collect()
        })
    }

    /// Every object under the destination prefix: key (without the prefix) -> bytes.
    pub fn outputs(&self) -> BTreeMap<String, Vec<u8>> {
        self.rt.block_on(async {
            let mut out = BTreeMap::new();
            let mut pages = self
                .s3
                .list_objects_v2()
                .bucket(DEST)
                .prefix(format!("{PREFIX}/"))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                for o in page.unwrap().contents.unwrap_or_default() {
                    let key = o.key.unwrap();
                    let body = self
                        .s3
                        .get_object()
                        .bucket(DEST)
                        .key(&key)
                        .send()
                        .await
                        .unwrap()
                        .body
                        .collect()
                        .await
                        .unwrap()
                        .into_bytes()
                        .to_vec();
                    out.insert(key[PREFIX.len() + 1..].to_string(), body);
                }
            }
            out
        })
    }

    /// Task ARNs started by the scaler that ECS still considers running.
    pub fn running_tasks(&self) -> Vec<String> {
        self.rt.block_on(async {
            let mut arns = Vec::new();
            let mut pages = self
                .ecs
                .list_tasks()
                .cluster(CLUSTER)
                .desired_status(DesiredStatus::Running)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                arns.extend(page.unwrap().task_arns.unwrap_or_default());
            }
            arns
        })
    }

    /// The container environment overrides of a task.
    pub fn task_overrides(&self, arn: &str) -> Vec<(String, String)> {
        self.rt.block_on(async {
            let out = self
                .ecs
                .describe_tasks()
                .cluster(CLUSTER)
                .tasks(arn)
                .send()
                .await
                .unwrap();
            out.tasks
                .unwrap_or_default()
                .into_iter()
                .flat_map(|t| {
                    t.overrides
                        .and_then(|o| o.container_overrides)
                        .unwrap_or_default()
                })
                .filter(|c| c.name.as_deref() == Some(CONTAINER))
                .flat_map(|c| c.environment.unwrap_or_default())
                .filter_map(|kv| Some((kv.name?, kv.value?)))
                .collect()
        })
    }

    pub fn stop_task(&self, arn: &str) {
        self.rt.block_on(async {
            let _ = self
                .ecs
                .stop_task()
                .cluster(CLUSTER)
                .task(arn)
                .reason("qp work exited")
                .send()
                .await;
        });
    }
}

/// What was uploaded: good images (key -> expected output size) and bad ones (keys).
#[derive(Default, Debug)]
pub struct Uploads {
    pub good: BTreeMap<String, (u32, u32)>,
    pub bad: Vec<String>,
}

/// Uploads `copies` rounds of the shipped sample photos under varied, awkward keys (spaces, `+`,
/// unicode, deep prefixes, the same file name in many folders), plus every bad fixture once.
pub fn upload_corpus(cloud: &Cloud, copies: usize, mut progress: impl FnMut(usize)) -> Uploads {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let samples = jpegs_in(&root.join("samples"));
    let mut uploads = Uploads::default();
    let folders = ["", "raw/", "a b/c+d/", "Ünïcødé/日本/", "deep/1/2/3/4/5/"];
    let mut n = 0;
    for copy in 0..copies {
        for sample in &samples {
            let name = sample.file_name().unwrap().to_str().unwrap();
            let key = format!("{}batch {copy}/{name}", folders[copy % folders.len()]);
            cloud.upload(&key, std::fs::read(sample).unwrap());
            uploads.good.insert(key, (224, 224));
            n += 1;
            progress(n);
        }
    }
    for bad in jpegs_in(&root.join("tests/fixtures"))
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("bad_"))
    {
        let key = format!("bad/{}", bad.file_name().unwrap().to_str().unwrap());
        cloud.upload(&key, std::fs::read(&bad).unwrap());
        uploads.bad.push(key);
        n += 1;
        progress(n);
    }
    uploads
}

fn jpegs_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    v
}

/// What verification found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub processed: usize,
    pub missing: Vec<String>,
    pub wrong_size: Vec<String>,
    pub in_dlq: usize,
    pub bad_not_in_dlq: Vec<String>,
    pub dlq_without_reason: Vec<String>,
    pub good_in_dlq: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.wrong_size.is_empty()
            && self.bad_not_in_dlq.is_empty()
            && self.dlq_without_reason.is_empty()
            && self.good_in_dlq.is_empty()
    }
}

/// Checks every good image is in the destination at its size and every bad one is in the DLQ.
/// `need_reason`: DLQ entries must carry qp's reason attribute (false for the redrive path).
pub fn verify(cloud: &Cloud, uploads: &Uploads, need_reason: bool) -> Verdict {
    let outputs = cloud.outputs();
    let mut v = Verdict {
        processed: outputs.len(),
        ..Verdict::default()
    };
    for (key, &(w, h)) in &uploads.good {
        match outputs.get(key) {
            None => v.missing.push(key.clone()),
            Some(bytes) => {
                let (ow, oh, _, _) = crate::util::decode(bytes);
                if (ow, oh) != (w, h) {
                    v.wrong_size.push(key.clone());
                }
            }
        }
    }
    let dlq = cloud.dlq();
    v.in_dlq = dlq.len();
    let dlq_keys: Vec<(String, bool)> = dlq
        .iter()
        .map(|(body, attrs)| {
            (
                decoded_keys(body).join(","),
                attrs.keys().any(|k| k.contains("reason")),
            )
        })
        .collect();
    for key in &uploads.bad {
        match dlq_keys
            .iter()
            .find(|(keys, _)| keys.split(',').any(|k| k == key))
        {
            None => v.bad_not_in_dlq.push(key.clone()),
            Some((_, has_reason)) if need_reason && !has_reason => {
                v.dlq_without_reason.push(key.clone())
            }
            Some(_) => {}
        }
    }
    for (keys, _) in &dlq_keys {
        for key in keys.split(',') {
            if uploads.good.contains_key(key) {
                v.good_in_dlq.push(key.to_string());
            }
        }
    }
    v
}

/// Object keys named by an S3 notification body (decoded as qp decodes them).
pub fn decoded_keys(body: &str) -> Vec<String> {
    match qp::event::parse(body) {
        Ok(qp::event::Body::Objects(refs)) => refs.into_iter().map(|r| r.key).collect(),
        _ => Vec::new(),
    }
}

/// An EventBridge scheduled event, as the rule delivers it to the Lambda.
pub fn scheduled_event(id: &str) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-24T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/qp-scale"],
        "detail": {}
    })
}

/// The Lambda: the real binary, copied as `bootstrap`, polling the mock Runtime API.
pub struct Lambda {
    pub api: LambdaApi,
    child: Child,
    _dir: tempfile::TempDir,
    invocations: usize,
}

impl Lambda {
    pub fn start(cloud: &Cloud, env: &[(String, String)]) -> Lambda {
        let dir = crate::util::tempdir();
        let bootstrap = dir.path().join("bootstrap");
        std::fs::copy(qp_binary(), &bootstrap).unwrap();
        let api = LambdaApi::start(Vec::new());
        let mut cmd = Command::new(&bootstrap);
        cloud.moto.configure(&mut cmd);
        api.configure(&mut cmd);
        cmd.envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap();
        Lambda {
            api,
            child,
            _dir: dir,
            invocations: 0,
        }
    }

    /// Delivers one scheduled event and returns the scaler's response.
    pub fn invoke(&mut self, event_id: &str) -> Value {
        self.api.push(scheduled_event(event_id));
        self.invocations += 1;
        assert!(
            self.api
                .wait_for_results(self.invocations, Duration::from_secs(60)),
            "the scaler did not answer invocation {}: errors {:?}",
            self.invocations,
            self.api.errors()
        );
        let responses = self.api.responses();
        let errors = self.api.errors();
        assert!(errors.is_empty(), "scaler invocation errors: {errors:?}");
        responses.last().unwrap().body.clone()
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Fargate stand-in: one `qp work` process per launched task.
pub struct Fargate {
    pub workers: Vec<Worker>,
    pub launched: usize,
    pub log_dir: tempfile::TempDir,
}

pub struct Worker {
    pub task: String,
    pub child: Child,
    pub started: Instant,
    pub exit: Option<std::process::ExitStatus>,
    pub log: PathBuf,
}

impl Fargate {
    pub fn new() -> Fargate {
        Fargate {
            workers: Vec::new(),
            launched: 0,
            log_dir: crate::util::tempdir(),
        }
    }

    /// Starts a worker for every running task that has none yet.
    pub fn start_new_tasks(&mut self, cloud: &Cloud) -> usize {
        let mut started = 0;
        for arn in cloud.running_tasks() {
            if self.workers.iter().any(|w| w.task == arn) {
                continue;
            }
            let overrides = cloud.task_overrides(&arn);
            let log = self
                .log_dir
                .path()
                .join(format!("worker-{}.log", self.workers.len()));
            let file = std::fs::File::create(&log).unwrap();
            let child = cloud
                .worker_command(&overrides)
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap();
            self.workers.push(Worker {
                task: arn,
                child,
                started: Instant::now(),
                exit: None,
                log,
            });
            self.launched += 1;
            started += 1;
        }
        started
    }

    /// Reaps exited workers and stops their tasks, as ECS would. Returns the number running.
    pub fn reap(&mut self, cloud: &Cloud) -> usize {
        for w in &mut self.workers {
            if w.exit.is_none()
                && let Ok(Some(status)) = w.child.try_wait()
            {
                w.exit = Some(status);
                cloud.stop_task(&w.task);
            }
        }
        self.workers.iter().filter(|w| w.exit.is_none()).count()
    }

    pub fn failed_workers(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter(|w| w.exit.is_some_and(|s| !s.success()))
            .map(|w| {
                format!(
                    "{} ({:?}): {}",
                    w.task,
                    w.exit,
                    std::fs::read_to_string(&w.log).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Fargate {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

/// The figures of one local run.
#[derive(Debug, Default)]
pub struct RunReport {
    pub ticks: usize,
    pub launched: usize,
    pub last_launch: u64,
    pub wall: Duration,
}

/// Runs the cloud's loop: tick the scaler, start workers for launched tasks, until the queue is
/// drained and every worker has exited by itself; then one last tick, which must launch nothing.
pub fn run_until_drained(
    cloud: &Cloud,
    lambda: &mut Lambda,
    fargate: &mut Fargate,
    tick_every: Duration,
    deadline: Duration,
    mut progress: impl FnMut(usize, &Value, usize, (u64, u64)),
) -> RunReport {
    let started = Instant::now();
    let mut report = RunReport::default();
    loop {
        assert!(
            started.elapsed() < deadline,
            "the pipeline did not drain in {deadline:?}"
        );
        report.ticks += 1;
        let tick = lambda.invoke(&format!("local-tick-{}", report.ticks));
        fargate.start_new_tasks(cloud);
        let t0 = Instant::now();
        let mut running = fargate.reap(cloud);
        let mut depth = cloud.depth();
        progress(report.ticks, &tick, running, depth);
        while t0.elapsed() < tick_every {
            std::thread::sleep(Duration::from_millis(250));
            running = fargate.reap(cloud);
            depth = cloud.depth();
            if running == 0 && depth == (0, 0) {
                break;
            }
        }
        if running == 0 && depth == (0, 0) {
            report.ticks += 1;
            let last = lambda.invoke(&format!("local-tick-{}", report.ticks));
            report.last_launch = last["launch"].as_u64().unwrap_or(u64::MAX);
            progress(report.ticks, &last, 0, depth);
            break;
        }
    }
    report.launched = fargate.launched;
    report.wall = started.elapsed();
    report
}

/// Spawned processes of a drill get the same clean environment as the tests.
pub fn plain(cmd: &mut Command) -> &mut Command {
    clean_env(cmd);
    cmd
}
