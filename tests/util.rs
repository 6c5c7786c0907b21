//! Helpers shared by the integration tests: the real `qp` binary in a clean environment, the
//! fixtures, temporary directories, and a private moto server (the local AWS).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `qp` binary under test (cargo builds it for the integration tests).
pub fn qp_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qp"))
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The good JPEG fixtures (everything that is not `bad_*`).
pub fn good_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jpg") && !n.starts_with("bad_"))
        .collect();
    names.sort();
    names
}

pub fn bad_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("bad_"))
        .collect();
    names.sort();
    names
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("qp-test-")
        .tempdir()
        .unwrap()
}

/// `qp` with an environment stripped of anything that could leak in from the developer's shell
/// (QP_* settings, AWS profiles and credentials, Lambda variables).
pub fn qp() -> Command {
    let mut cmd = Command::new(qp_binary());
    clean_env(&mut cmd);
    cmd
}

pub fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("QP_") || key.starts_with("AWS_") || key == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// Runs to completion, returning the output; panics with both streams if it could not start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Decodes a JPEG with zune-jpeg (independent of qp's pipeline): (width, height, channels, pixels).
pub fn decode(jpeg: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    let mut d = zune_jpeg::JpegDecoder::new(ZCursor::new(jpeg));
    let pixels = d.decode().expect("output is a valid JPEG");
    let info = d.info().unwrap();
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let channels = pixels.len() / (w as usize * h as usize);
    (w, h, channels, pixels)
}

/// qp's decoded pixels as RGB (gray expanded, RGBX's spare byte dropped).
pub fn rgb(p: &qp::image::Pixels) -> Vec<u8> {
    match p.channels {
        1 => p.data.iter().flat_map(|&v| [v, v, v]).collect(),
        _ => p
            .data
            .chunks_exact(4)
            .flat_map(|x| [x[0], x[1], x[2]])
            .collect(),
    }
}

/// Peak signal-to-noise ratio of two equally sized 8-bit buffers, in dB.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr of different sizes");
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// A private moto server (S3, SQS, ECS, EC2, IAM over HTTP) on a free port, stopped on drop.
///
/// Found as `$QP_MOTO_SERVER`, else `moto_server` on PATH (.ci/run installs it in a venv), and
/// started through `tests/moto_server.py` with the Python that script names, so SQS deletes
/// cannot drop a message sent at the same time (that file says how moto does).
pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let program = moto_program();
        let python = python_of(&program);
        let port = free_port();
        let child = Command::new(&python[0])
            .args(&python[1..])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {program}: {e} (install moto[server] or set QP_MOTO_SERVER)")
            });
        let moto = Moto {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Its address, for a proxy to put in front of it.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Points a command at this moto with dummy credentials.
    pub fn configure(&self, cmd: &mut Command) {
        clean_env(cmd);
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
    }

    /// An SDK config for the test's own calls (set-up and assertions).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    pub async fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk_config().await)
    }
}

fn moto_program() -> String {
    std::env::var("QP_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into())
}

/// The Python that runs moto (with its arguments), for the tests' other helper scripts.
pub fn moto_python() -> Vec<String> {
    python_of(&moto_program())
}

/// The interpreter (and its arguments) on the `#!` line of `program`, a pip console script found
/// as a path or on PATH: the Python that has moto installed.
fn python_of(program: &str) -> Vec<String> {
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("{program} is not on PATH (install moto[server] or set QP_MOTO_SERVER)")
            })
    };
    let script = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let shebang = script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .unwrap_or_else(|| panic!("{} has no #! line naming its Python", path.display()));
    shebang.split_whitespace().map(str::to_owned).collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker cluster, with both Fargate capacity providers, and a Fargate task definition of
/// `family` (`cpu`, `memory`) running `container`, as terraform creates them. Returns the task
/// definition's ARN.
pub async fn create_worker_cluster(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    family: &str,
    (cpu, memory): (&str, &str),
    container: aws_sdk_ecs::types::ContainerDefinition,
) -> String {
    use aws_sdk_ecs::types::{Compatibility, NetworkMode};
    ecs.create_cluster()
        .cluster_name(cluster)
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family(family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu(cpu)
        .memory(memory)
        .container_definitions(container)
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One EC2 Query API call to moto (the tests need no EC2 SDK for four set-up calls).
pub fn ec2(moto: &Moto, params: &[(&str, &str)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let mut body = String::from("Version=2016-11-15");
    for (k, v) in params {
        body.push_str(&format!(
            "&{k}={}",
            utf8_percent_encode(v, NON_ALPHANUMERIC)
        ));
    }
    let mut s = connect_retrying(moto.port);
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Amz-Date: 20240101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential=testing/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        moto.port,
        body.len()
    );
    std::io::Write::write_all(&mut s, head.as_bytes()).unwrap();
    let response = crate::lambda_api::read_response(&mut std::io::BufReader::new(s)).unwrap();
    let out = String::from_utf8(response.body).unwrap();
    assert_eq!(response.status, 200, "EC2 {params:?}: {out}");
    out
}

pub fn xml_value(xml: &str, tag: &str) -> String {
    let start = xml
        .find(&format!("<{tag}>"))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + tag.len()
        + 2;
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    xml[start..end].to_owned()
}

/// What `RunTask` with `awsvpc` needs in moto: a VPC with DNS hostnames, subnets in two AZs
/// and a security group, all made through EC2.
pub struct Network {
    pub subnets: Vec<String>,
    pub security_group: String,
}

pub fn network(moto: &Moto) -> Network {
    let vpc = xml_value(
        &ec2(
            moto,
            &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")],
        ),
        "vpcId",
    );
    ec2(
        moto,
        &[
            ("Action", "ModifyVpcAttribute"),
            ("VpcId", &vpc),
            ("EnableDnsHostnames.Value", "true"),
        ],
    );
    let subnets = [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")]
        .iter()
        .map(|(cidr, az)| {
            let xml = ec2(
                moto,
                &[
                    ("Action", "CreateSubnet"),
                    ("VpcId", &vpc),
                    ("CidrBlock", cidr),
                    ("AvailabilityZone", az),
                ],
            );
            xml_value(&xml, "subnetId")
        })
        .collect();
    let xml = ec2(
        moto,
        &[
            ("Action", "CreateSecurityGroup"),
            ("GroupName", "qp-worker"),
            ("GroupDescription", "qp workers"),
            ("VpcId", &vpc),
        ],
    );
    Network {
        subnets,
        security_group: xml_value(&xml, "groupId"),
    }
}

/// The ARN of the queue at `url`.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName;
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

/// Makes `bucket` notify the queue `queue_arn` of every object created (`s3:ObjectCreated:*`,
/// as terraform does); moto then sends the `s3:TestEvent` message.
pub async fn notify_queue(s3: &aws_sdk_s3::Client, bucket: &str, queue_arn: String) {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// (visible, in flight) messages of the queue at `url`.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let a = out.attributes().unwrap();
    let n = |k: QueueAttributeName| a[&k].parse::<u64>().unwrap();
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// A connection to moto. Its single-process server can refuse a connection for a moment while
/// several tests hammer it at once (seen once in a full run); the SDK retries that itself, so the
/// raw EC2 helper does too, a few times.
fn connect_retrying(port: u16) -> TcpStream {
    let mut attempt = 0;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if attempt < 5 => {
                attempt += 1;
                eprintln!("connecting to moto on port {port}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("connecting to moto on port {port}: {e}"),
        }
    }
}

/// The Pythons to try, best first: `$QP_VENV`'s, the venv scripts/setup makes, python3.
pub fn pythons() -> Vec<PathBuf> {
    let mut pythons: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("QP_VENV") {
        pythons.push(Path::new(&venv).join("bin/python"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        pythons.push(Path::new(&home).join(".cache/qp-venv/bin/python"));
    }
    pythons.push("python3".into());
    pythons
}

/// The first of [`pythons`] with Pillow.
pub fn pillow_python() -> PathBuf {
    let pythons = pythons();
    for python in &pythons {
        let ok = Command::new(python)
            .args(["-c", "import PIL"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python.clone();
        }
    }
    panic!("no python with Pillow among {pythons:?}: run scripts/setup (it creates the venv)");
}
