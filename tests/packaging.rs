//! Packaging and deployment: the static binary, the worker image, the Lambda zip, buildspec.yml
//! and terraform/.
//!
//! The artifact tests use the static musl release binary that `scripts/test` builds once
//! (`scripts/build-static`) and passes as `QP_STATIC_BIN`; building it here would take ~10
//! minutes inside `cargo test`. Without it they fail with a message saying how to run them.
//! The buildspec and terraform tests need no static binary.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

use crate::util::{run, stderr, stdout, tempdir};

const MAX_BINARY_BYTES: u64 = 20 * 1000 * 1000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The static binary under test, from `QP_STATIC_BIN`.
fn static_bin() -> PathBuf {
    let Some(path) = std::env::var_os("QP_STATIC_BIN") else {
        panic!(
            "QP_STATIC_BIN is not set. The packaging tests check the static release binary, which \
             scripts/test builds once. Run scripts/test, or: \
             export QP_STATIC_BIN=\"$(scripts/build-static)\" && cargo test packaging"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "QP_STATIC_BIN={} does not exist (run scripts/build-static)",
        path.display()
    );
    path
}

/// `program args...` must succeed; returns stdout.
fn check(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The container engine scripts/build-image picks: $QP_CONTAINER_ENGINE, else podman, else docker.
fn engine() -> String {
    if let Ok(e) = std::env::var("QP_CONTAINER_ENGINE") {
        return e;
    }
    for e in ["podman", "docker"] {
        if on_path(e) {
            return e.into();
        }
    }
    panic!("neither podman nor docker is installed (scripts/setup installs podman)");
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).unwrap().permissions().mode() & 0o111 == 0o111
}

/// Every regular file below `root`, as slash-separated relative paths.
fn files_below(root: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The static binary
// ---------------------------------------------------------------------------------------------

#[test]
fn static_binary_is_static_small_and_runs() {
    let bin = static_bin();
    let kind = check(Command::new("file").arg("-b").arg(&bin));
    assert!(
        kind.contains("statically linked") || kind.contains("static-pie linked"),
        "not a static binary: {kind}"
    );
    assert!(kind.contains("x86-64"), "not x86-64: {kind}");
    let size = fs::metadata(&bin).unwrap().len();
    assert!(
        size <= MAX_BINARY_BYTES,
        "{} is {size} bytes, over the {MAX_BINARY_BYTES} budget",
        bin.display()
    );
    let version = check(Command::new(&bin).arg("--version"));
    assert_eq!(version.trim(), concat!("qp ", env!("CARGO_PKG_VERSION")));
}

// ---------------------------------------------------------------------------------------------
// The Lambda zip
// ---------------------------------------------------------------------------------------------

#[test]
fn repo_bootstrap_is_the_binary_itself() {
    // No bootstrap script: the repo's `bootstrap` is a link to the static binary, whose argv[0]
    // dispatch makes it the scaler.
    let link = fs::read_link(repo().join("bootstrap")).expect("bootstrap is a symlink");
    assert_eq!(link, Path::new("dist/qp"));
}

#[test]
fn lambda_zip_holds_an_executable_bootstrap_that_is_the_scaler() {
    let bin = static_bin();
    let tmp = tempdir();
    let zip = tmp.path().join("qp-lambda.zip");
    let printed = check(
        Command::new(repo().join("scripts/package-lambda"))
            .arg("--bin")
            .arg(&bin)
            .arg("--out")
            .arg(&zip),
    );
    assert_eq!(Path::new(printed.trim()), zip);

    // Exactly one entry, at the root, executable by everyone (Lambda runs it as another user).
    let names = check(Command::new("unzip").arg("-Z1").arg(&zip));
    assert_eq!(names.lines().collect::<Vec<_>>(), ["bootstrap"]);
    let listing = check(Command::new("unzip").arg("-Z").arg(&zip));
    let entry = listing.lines().find(|l| l.ends_with(" bootstrap")).unwrap();
    assert!(entry.starts_with("-rwxr-xr-x"), "mode in zip: {entry}");

    let task = tmp.path().join("task");
    check(
        Command::new("unzip")
            .arg("-q")
            .arg(&zip)
            .arg("-d")
            .arg(&task),
    );
    let bootstrap = task.join("bootstrap");
    assert!(is_executable(&bootstrap));
    assert!(
        fs::read(&bootstrap).unwrap() == fs::read(&bin).unwrap(),
        "bootstrap is not the static binary byte for byte"
    );

    // Run it the way Lambda does (by that name, from its directory): it is `qp scale`.
    let mut cmd = Command::new("./bootstrap");
    crate::util::clean_env(&mut cmd);
    let help = check(cmd.current_dir(&task).arg("--help"));
    assert!(help.contains("--dry-run"), "{help}");
    assert!(help.contains("QP_CLUSTER"), "{help}");
    let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(usage.contains("scale"), "not scale's help: {usage}");
    assert!(
        !help.contains("resize"),
        "top-level help, not scale's: {help}"
    );

    // And it does the scaler's job: one scheduled event from a Runtime API launches tasks.
    crate::scale::drive_bootstrap_through_one_scheduled_event(&bootstrap);

    // Reproducible: the same binary gives the same zip.
    let again = tmp.path().join("again.zip");
    check(
        Command::new(repo().join("scripts/package-lambda"))
            .arg("--bin")
            .arg(&bin)
            .arg("--out")
            .arg(&again),
    );
    assert!(fs::read(&zip).unwrap() == fs::read(&again).unwrap());
}

// ---------------------------------------------------------------------------------------------
// The worker image
// ---------------------------------------------------------------------------------------------

/// Removes the test's image however the test ends.
struct Image {
    engine: String,
    tag: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new(&self.engine)
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

#[test]
fn image_is_scratch_nonroot_and_runs_the_worker() {
    let bin = static_bin();
    let engine = engine();
    let image = Image {
        tag: format!("localhost/qp-packaging-test:{}", std::process::id()),
        engine: engine.clone(),
    };
    let printed = check(
        Command::new(repo().join("scripts/build-image"))
            .env("QP_CONTAINER_ENGINE", &engine)
            .arg("--bin")
            .arg(&bin)
            .arg("--tag")
            .arg(&image.tag),
    );
    assert_eq!(printed.trim(), image.tag);

    // The config: non-root, `qp work` as the entrypoint, nothing appended.
    let config = check(Command::new(&engine).args([
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &image.tag,
    ]));
    let config: serde_json::Value = serde_json::from_str(config.trim()).unwrap();
    let user = config["User"].as_str().unwrap_or_default();
    let uid = user.split(':').next().unwrap();
    assert!(
        !uid.is_empty() && uid != "0" && uid != "root",
        "image runs as root: User={user:?}"
    );
    assert_eq!(config["Entrypoint"], serde_json::json!(["/qp", "work"]));
    assert!(
        config["Cmd"].is_null() || config["Cmd"] == serde_json::json!([]),
        "Cmd: {}",
        config["Cmd"]
    );
    let env = config["Env"].as_array().cloned().unwrap_or_default();
    assert!(
        env.contains(&serde_json::json!(
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
        )),
        "Env: {env:?}"
    );

    // The file system: unpack every layer of the saved image.
    let tmp = tempdir();
    let archive = tmp.path().join("image.tar");
    let mut save = Command::new(&engine);
    save.arg("save").arg("-o").arg(&archive);
    if engine == "podman" {
        save.args(["--format", "docker-archive"]);
    }
    check(save.arg(&image.tag));
    let unpacked = tmp.path().join("archive");
    fs::create_dir(&unpacked).unwrap();
    check(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let rootfs = tmp.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        check(
            Command::new("tar")
                .arg("-xf")
                .arg(unpacked.join(layer.as_str().unwrap()))
                .arg("-C")
                .arg(&rootfs),
        );
    }
    assert_eq!(
        files_below(&rootfs),
        BTreeSet::from([
            "etc/ssl/certs/ca-certificates.crt".to_string(),
            "qp".to_string()
        ]),
        "the image holds only the binary and the CA bundle"
    );
    let ca = fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(ca.matches("BEGIN CERTIFICATE").count() > 10, "CA bundle");

    // Containers cannot run here: run the image's binary on the host instead.
    let qp = rootfs.join("qp");
    assert!(fs::read(&qp).unwrap() == fs::read(&bin).unwrap());
    let version = check(Command::new(&qp).arg("--version"));
    assert_eq!(version.trim(), concat!("qp ", env!("CARGO_PKG_VERSION")));
}

// ---------------------------------------------------------------------------------------------
// buildspec.yml, run with stand-in aws, docker, cargo, rustup, apt-get, curl
// ---------------------------------------------------------------------------------------------

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// Values for the variables the CodeBuild project sets (terraform/cicd.tf). A variable added
/// there without a value here fails the test, so buildspec.yml and terraform stay in step.
fn codebuild_project_env() -> BTreeMap<String, String> {
    let cicd = fs::read_to_string(repo().join("terraform/cicd.tf")).unwrap();
    let mut env = BTreeMap::new();
    for block in blocks(&cicd, "environment_variable {") {
        let name = hcl_string(block, "name").expect("environment_variable without a name");
        let value = match name.as_str() {
            "ECR_REPOSITORY_URI" => format!("{REGISTRY}/qp"),
            "TASK_FAMILY" => "qp-worker".into(),
            "CONTAINER_NAME" => "worker".into(),
            "LAMBDA_FUNCTION" => "qp-scale".into(),
            other => panic!("terraform/cicd.tf sets {other}: give it a test value here"),
        };
        env.insert(name, value);
    }
    assert!(
        !env.is_empty(),
        "no environment_variable in terraform/cicd.tf"
    );
    env
}

/// buildspec.yml as JSON, parsed by PyYAML (the test venv has it: checkov depends on it).
fn buildspec() -> serde_json::Value {
    let pythons = crate::util::pythons();
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    for python in &pythons {
        let Ok(out) = Command::new(python)
            .args(["-c", script])
            .arg(repo().join("buildspec.yml"))
            .output()
        else {
            continue;
        };
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
    }
    panic!("no python with PyYAML among {pythons:?}: run scripts/setup (it creates the venv)");
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the stand-ins recorded, one command line each, and the files they kept.
struct BuildRun {
    ok: bool,
    output: String,
    log: Vec<String>,
    work: tempfile::TempDir,
}

impl BuildRun {
    fn position(&self, prefix: &str) -> usize {
        self.log
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in the build:\n{}", self.log.join("\n")))
    }

    fn ran(&self, prefix: &str) -> bool {
        self.log.iter().any(|l| l.starts_with(prefix))
    }
}

const STUB: &str = r#"#!/bin/sh
# Stand-in: records its command line (in one write: piped stand-ins must not interleave),
# then plays its part.
line="$(basename "$0")"; for a in "$@"; do line="$line $a"; done
printf '%s\n' "$line" >> "$QP_STUB_LOG"
case "$(basename "$0") $1 $2" in
  "aws ecr get-login-password") echo fake-token ;;
  "aws ecr describe-images") [ -n "$QP_STUB_IMAGE_EXISTS" ] || exit 254 ;;
  "aws ecs describe-task-definition") cat "$QP_STUB_DIR/taskdef-current.json" ;;
  "aws ecs register-task-definition")
    for a in "$@"; do case "$a" in file://*) cp "${a#file://}" "$QP_STUB_DIR/registered.json" ;; esac; done
    echo "arn:aws:ecs:eu-west-1:123456789012:task-definition/qp-worker:8" ;;
  "aws lambda update-function-code") echo '{"FunctionName": "qp-scale"}' ;;
  "docker login "*) cat > "$QP_STUB_DIR/docker-login-stdin" ;;
esac
exit 0
"#;

/// The task definition the stand-in `aws` describes: terraform's revision 7, with a sidecar that
/// must be left alone and the read-only fields register-task-definition refuses.
fn current_task_definition() -> serde_json::Value {
    serde_json::json!({
        "taskDefinition": {
            "taskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/qp-worker:7",
            "family": "qp-worker",
            "revision": 7,
            "status": "ACTIVE",
            "taskRoleArn": "arn:aws:iam::123456789012:role/qp-worker-task",
            "executionRoleArn": "arn:aws:iam::123456789012:role/qp-worker-execution",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "compatibilities": ["EC2", "FARGATE"],
            "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
            "cpu": "1024",
            "memory": "2048",
            "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
            "registeredAt": "2026-11-01T00:00:00Z",
            "registeredBy": "arn:aws:iam::123456789012:role/terraform",
            "volumes": [],
            "placementConstraints": [],
            "containerDefinitions": [
                {"name": "worker", "image": format!("{REGISTRY}/qp:initial"), "essential": true,
                 "readonlyRootFilesystem": true, "stopTimeout": 120,
                 "environment": [{"name": "QP_QUEUE_URL", "value": "https://sqs/uploads"}]},
                {"name": "sidecar", "image": "public.ecr.aws/example/sidecar:1", "essential": false}
            ]
        },
        "tags": [{"key": "Project", "value": "qp"}]
    })
}

/// Runs buildspec.yml's phases in order, in one bash (as CodeBuild does: variables persist,
/// the first failing command stops the build), in a scratch copy of the repo whose
/// scripts/test and scripts/build-static are stand-ins; build-image and package-lambda are real.
fn run_buildspec(tests_fail: bool, image_exists: bool) -> BuildRun {
    let spec = buildspec();
    assert_eq!(spec["version"], serde_json::json!(0.2));
    let work = tempdir();
    let w = work.path();
    for file in [
        "buildspec.yml",
        "Dockerfile",
        ".dockerignore",
        "scripts/build-image",
        "scripts/package-lambda",
    ] {
        fs::create_dir_all(w.join(file).parent().unwrap()).unwrap();
        fs::copy(repo().join(file), w.join(file)).unwrap();
    }
    let stubs = w.join(".stubs");
    fs::create_dir_all(stubs.join("bin")).unwrap();
    fs::create_dir_all(w.join("home")).unwrap();
    let write_exe = |path: &Path, text: &str| {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    for tool in ["aws", "docker", "cargo", "rustup", "curl", "apt-get"] {
        write_exe(&stubs.join("bin").join(tool), STUB);
    }
    // scripts/test stands in for the suite (this test is part of it); scripts/build-static for
    // the 10-minute release build: any x86-64 ELF does for the packaging steps that follow.
    write_exe(
        &w.join("scripts/test"),
        "#!/bin/sh\necho scripts/test >> \"$QP_STUB_LOG\"\nexit \"${QP_STUB_TEST_EXIT:-0}\"\n",
    );
    let elf = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("true(1)");
    write_exe(
        &w.join("scripts/build-static"),
        &format!(
            "#!/bin/sh\necho scripts/build-static >> \"$QP_STUB_LOG\"\nmkdir -p dist\n\
             cp {elf} dist/qp\necho \"$PWD/dist/qp\"\n"
        ),
    );
    fs::write(
        stubs.join("taskdef-current.json"),
        current_task_definition().to_string(),
    )
    .unwrap();

    let mut script = String::from("set -e\ncd \"$QP_WORK\"\n");
    for (k, v) in spec["env"]["variables"].as_object().unwrap() {
        let v = v.as_str().map_or_else(|| v.to_string(), |s| s.to_string());
        script += &format!("export {k}={}\n", shell_quote(&v));
    }
    let phases = spec["phases"].as_object().unwrap();
    for phase in phases.keys() {
        assert!(
            ["install", "pre_build", "build", "post_build"].contains(&phase.as_str()),
            "unknown phase {phase}"
        );
    }
    for phase in ["install", "pre_build", "build", "post_build"] {
        let Some(p) = phases.get(phase) else { continue };
        script += &format!("echo 'phase {phase}' >> \"$QP_STUB_LOG\"\n");
        for command in p["commands"].as_array().unwrap() {
            script += command.as_str().unwrap();
            script += "\n";
        }
    }

    let log = stubs.join("log");
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                stubs.join("bin").display()
            ),
        )
        .env("HOME", w.join("home"))
        .env("QP_WORK", w)
        .env("QP_STUB_LOG", &log)
        .env("QP_STUB_DIR", &stubs)
        .env("CODEBUILD_RESOLVED_SOURCE_VERSION", COMMIT)
        .env("CODEBUILD_SRC_DIR", w)
        .env("AWS_REGION", "eu-west-1")
        .envs(codebuild_project_env());
    if tests_fail {
        cmd.env("QP_STUB_TEST_EXIT", "1");
    }
    if image_exists {
        cmd.env("QP_STUB_IMAGE_EXISTS", "1");
    }
    let out = run(&mut cmd);
    let log = fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    BuildRun {
        ok: out.status.success(),
        output: format!("{}\n{}", stdout(&out), stderr(&out)),
        log,
        work,
    }
}

#[test]
fn buildspec_tests_builds_pushes_and_deploys_in_order() {
    let b = run_buildspec(false, false);
    assert!(b.ok, "build failed:\n{}\n{}", b.output, b.log.join("\n"));
    let image = format!("{REGISTRY}/qp:{COMMIT}");

    // Toolchain: the musl target and musl-tools.
    let apt = b.position("apt-get install");
    assert!(b.log[apt].contains("musl-tools"), "{}", b.log[apt]);
    let toolchain = b.position("rustup toolchain install");
    assert!(b.log[toolchain].contains("--target x86_64-unknown-linux-musl"));

    let tests = b.position("scripts/test");
    let login = b.position("docker login --username AWS --password-stdin");
    assert!(b.log[login].ends_with(REGISTRY), "{}", b.log[login]);
    let build_static = b.position("scripts/build-static");
    let docker_build = b.position("docker build");
    assert!(
        b.log[docker_build].contains(&format!("--tag {image}")),
        "image not tagged with the commit: {}",
        b.log[docker_build]
    );
    let push = b.position(&format!("docker push {image}"));
    let register = b.position("aws ecs register-task-definition --cli-input-json file://");
    let lambda = b.position(
        "aws lambda update-function-code --function-name qp-scale --zip-file fileb://dist/qp-lambda.zip",
    );
    let wait = b.position("aws lambda wait function-updated --function-name qp-scale");
    assert!(
        apt < toolchain
            && toolchain < tests
            && tests < build_static
            && build_static < docker_build
            && docker_build < push
            && push < register
            && register < lambda
            && lambda < wait,
        "out of order:\n{}",
        b.log.join("\n")
    );
    assert!(
        apt < b.position("phase pre_build") && tests < b.position("phase build"),
        "tests must run before the build phase:\n{}",
        b.log.join("\n")
    );
    let stubs = b.work.path().join(".stubs");
    assert_eq!(
        fs::read_to_string(stubs.join("docker-login-stdin")).unwrap(),
        "fake-token\n"
    );

    // The new revision: the latest one with this image in the named container, nothing else
    // changed, and none of the read-only fields register-task-definition refuses.
    let registered: serde_json::Value =
        serde_json::from_slice(&fs::read(stubs.join("registered.json")).unwrap()).unwrap();
    let current = &current_task_definition()["taskDefinition"];
    let containers = registered["containerDefinitions"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["name"], "worker");
    assert_eq!(containers[0]["image"], image.as_str());
    assert_eq!(
        containers[0]["environment"],
        current["containerDefinitions"][0]["environment"]
    );
    assert_eq!(containers[0]["readonlyRootFilesystem"], true);
    assert_eq!(containers[1], current["containerDefinitions"][1]);
    for key in [
        "family",
        "taskRoleArn",
        "executionRoleArn",
        "networkMode",
        "cpu",
        "memory",
        "requiresCompatibilities",
        "runtimePlatform",
    ] {
        assert_eq!(registered[key], current[key], "{key}");
    }
    for key in [
        "taskDefinitionArn",
        "revision",
        "status",
        "compatibilities",
        "requiresAttributes",
        "registeredAt",
        "registeredBy",
    ] {
        assert!(registered.get(key).is_none(), "{key} passed to register");
    }
    assert_eq!(
        registered["tags"],
        serde_json::json!([{"key": "Project", "value": "qp"}])
    );

    // The Lambda zip the real scripts/package-lambda made, and every artifact CodePipeline gets.
    let names = check(
        Command::new("unzip")
            .arg("-Z1")
            .arg(b.work.path().join("dist/qp-lambda.zip")),
    );
    assert_eq!(names.trim(), "bootstrap");
    let spec = buildspec();
    for file in spec["artifacts"]["files"].as_array().unwrap() {
        let path = b.work.path().join(file.as_str().unwrap());
        assert!(path.is_file(), "artifact {} not produced", path.display());
    }
    let detail: serde_json::Value =
        serde_json::from_slice(&fs::read(b.work.path().join("dist/imagedetail.json")).unwrap())
            .unwrap();
    assert_eq!(detail["ImageURI"], image.as_str());
    assert_eq!(
        fs::read_to_string(b.work.path().join("dist/taskdef-arn.txt"))
            .unwrap()
            .trim(),
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/qp-worker:8"
    );
}

#[test]
fn buildspec_deploys_nothing_when_the_tests_fail() {
    let b = run_buildspec(true, false);
    assert!(!b.ok, "a failing test suite must fail the build");
    assert!(b.ran("scripts/test"));
    for step in [
        "scripts/build-static",
        "docker build",
        "docker push",
        "aws ecs register-task-definition",
        "aws lambda update-function-code",
    ] {
        assert!(!b.ran(step), "`{step}` ran after failed tests");
    }
}

#[test]
fn buildspec_rerun_of_a_commit_reuses_its_immutable_tag() {
    let b = run_buildspec(false, true);
    assert!(b.ok, "build failed:\n{}\n{}", b.output, b.log.join("\n"));
    assert!(!b.ran("docker push"), "pushed over an immutable tag");
    b.position("aws ecs register-task-definition");
    b.position("aws lambda update-function-code");
}

// ---------------------------------------------------------------------------------------------
// terraform/
// ---------------------------------------------------------------------------------------------

fn tf(file: &str) -> String {
    fs::read_to_string(repo().join("terraform").join(file))
        .unwrap_or_else(|e| panic!("terraform/{file}: {e}"))
}

fn all_tf() -> String {
    let mut names: Vec<PathBuf> = fs::read_dir(repo().join("terraform"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The bodies of the blocks opened by `opening` (text ending in `{`), up to the matching brace.
/// Enough HCL for these checks: braces inside strings are balanced in this code.
fn blocks<'a>(text: &'a str, opening: &str) -> Vec<&'a str> {
    assert!(opening.ends_with('{'));
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(opening) {
        let start = from + at + opening.len();
        let mut depth = 1;
        let mut end = start;
        for (i, c) in text[start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = start + i;
                break;
            }
        }
        assert!(depth == 0, "unbalanced block after `{opening}`");
        found.push(&text[start..end]);
        from = end;
    }
    found
}

fn block<'a>(text: &'a str, opening: &str) -> &'a str {
    let found = blocks(text, opening);
    assert_eq!(found.len(), 1, "expected one `{opening}`");
    found[0]
}

/// `key = "value"` inside a block.
fn hcl_string(block: &str, key: &str) -> Option<String> {
    block.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The QP_* keys of a `name = { ... }` map in terraform.
fn qp_keys(map_body: &str) -> BTreeSet<String> {
    map_body
        .lines()
        .filter_map(|l| {
            let key = l.split_once('=')?.0.trim();
            key.starts_with("QP_").then(|| key.to_string())
        })
        .collect()
}

/// The variable names (`env = "QP_..."`) clap declares for a subcommand of qp.
fn clap_env(subcommand: &str) -> BTreeSet<String> {
    let cli = qp::cli::Cli::command();
    let sub = cli
        .find_subcommand(subcommand)
        .unwrap_or_else(|| panic!("qp has no subcommand {subcommand}"));
    sub.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// The worker's environment (local.worker_env) and the scaler's (local.scaler_env).
fn terraform_env() -> (BTreeSet<String>, BTreeSet<String>) {
    let ecs = tf("ecs.tf");
    let lambda = tf("lambda.tf");
    // The maps are what the task definition and the function really get.
    assert!(
        ecs.contains("environment            = [for k, v in local.worker_env :"),
        "the container environment is not built from local.worker_env"
    );
    assert!(
        lambda.contains("variables = { for k, v in local.scaler_env :"),
        "the Lambda environment is not built from local.scaler_env"
    );
    (
        qp_keys(block(&ecs, "worker_env = {")),
        qp_keys(block(&lambda, "scaler_env = {")),
    )
}

#[test]
fn terraform_sets_every_variable_qp_requires() {
    let (worker, scaler) = terraform_env();
    for name in qp::config::work::REQUIRED_ENV {
        assert!(
            worker.contains(*name),
            "qp work requires {name}: set it in local.worker_env (terraform/ecs.tf)"
        );
    }
    for name in qp::config::scale::REQUIRED_ENV {
        assert!(
            scaler.contains(*name),
            "qp scale requires {name}: set it in local.scaler_env (terraform/lambda.tf)"
        );
    }
}

#[test]
fn terraform_sets_only_variables_qp_knows() {
    let (worker, scaler) = terraform_env();
    let (work_known, scale_known) = (clap_env("work"), clap_env("scale"));
    assert!(work_known.contains("QP_QUEUE_URL") && scale_known.contains("QP_CLUSTER"));
    for name in &worker {
        assert!(work_known.contains(name), "qp work does not read {name}");
    }
    for name in &scaler {
        assert!(scale_known.contains(name), "qp scale does not read {name}");
    }
}

#[test]
fn terraform_task_definition_and_function_are_as_designed() {
    let ecs = tf("ecs.tf");
    let task = block(&ecs, "resource \"aws_ecs_task_definition\" \"worker\" {");
    for needle in [
        "stopTimeout = 120",
        "readonlyRootFilesystem = true",
        "logDriver = \"awslogs\"",
        "requires_compatibilities = [\"FARGATE\"]",
        "cpu                      = var.task_cpu",
        "memory                   = var.task_memory",
    ] {
        assert!(task.contains(needle), "task definition lacks `{needle}`");
    }
    let providers = block(
        &ecs,
        "resource \"aws_ecs_cluster_capacity_providers\" \"this\" {",
    );
    assert!(providers.contains("[\"FARGATE\", \"FARGATE_SPOT\"]"));
    assert!(ecs.contains("name  = \"containerInsights\""));

    let all = all_tf();
    assert!(
        !all.contains("resource \"aws_ecs_service\""),
        "standalone tasks only"
    );
    assert!(!all.contains("module \""), "plain aws_* resources only");

    let lambda = tf("lambda.tf");
    let function = block(&lambda, "resource \"aws_lambda_function\" \"scaler\" {");
    assert!(function.contains("architectures = [\"x86_64\"]"));
    let invoke = block(
        &lambda,
        "resource \"aws_lambda_function_event_invoke_config\" \"scaler\" {",
    );
    assert!(invoke.contains("maximum_retry_attempts       = 0"));
    let variables = tf("variables.tf");
    let runtime = block(&variables, "variable \"lambda_runtime\" {");
    assert!(runtime.contains("default     = \"provided.al2023\""));
    assert!(runtime.contains("\"provided.al2\""));
    let schedule = block(&variables, "variable \"schedule_expression\" {");
    assert!(schedule.contains("default     = \"rate(2 minutes)\""));

    let queue = tf("queue.tf");
    let notification = block(
        &queue,
        "resource \"aws_s3_bucket_notification\" \"source\" {",
    );
    assert!(
        notification.contains("events        = [\"s3:ObjectCreated:*\"]"),
        "multipart uploads (CompleteMultipartUpload) must be subscribed too"
    );
    let uploads = block(&queue, "resource \"aws_sqs_queue\" \"uploads\" {");
    assert!(uploads.contains("deadLetterTargetArn = aws_sqs_queue.dlq.arn"));
    assert!(uploads.contains("receive_wait_time_seconds  = 20"));

    let cicd = tf("cicd.tf");
    let ecr = block(&cicd, "resource \"aws_ecr_repository\" \"this\" {");
    assert!(ecr.contains("image_tag_mutability = \"IMMUTABLE\""));
    assert!(ecr.contains("scan_on_push = true"));
}

#[test]
fn terraform_iam_is_scoped() {
    let all = all_tf();
    // Every statement handing out iam:PassRole names its roles and the one service.
    let statements = blocks(&all, "statement {");
    let pass_role: Vec<&str> = statements
        .iter()
        .copied()
        .filter(|s| s.contains("\"iam:PassRole\""))
        .collect();
    assert_eq!(pass_role.len(), 2, "the scaler's and the build's");
    for s in pass_role {
        assert!(
            s.contains("resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]"),
            "{s}"
        );
        assert!(s.contains("variable = \"iam:PassedToService\""), "{s}");
        assert!(
            s.contains("values   = [\"ecs-tasks.amazonaws.com\"]"),
            "{s}"
        );
    }
    // "*" only where the action has no resource to scope to, and ListTasks under its cluster
    // condition.
    for s in &statements {
        if s.contains("resources = [\"*\"]") {
            let actions = hcl_actions(s);
            for action in &actions {
                assert!(
                    [
                        "ecr:GetAuthorizationToken",
                        "ecs:ListTasks",
                        "ecs:DescribeTaskDefinition",
                        "ecs:RegisterTaskDefinition",
                    ]
                    .contains(&action.as_str()),
                    "{action} on \"*\""
                );
            }
            if actions.iter().any(|a| a == "ecs:ListTasks") {
                assert!(s.contains("variable = \"ecs:cluster\""), "{s}");
            }
        }
    }
    assert!(!all.contains("\"ecs:Describe*\"") && !all.contains("\"ecs:List*\""));
}

/// The actions of a policy statement block.
fn hcl_actions(statement: &str) -> Vec<String> {
    let Some(at) = statement.find("actions") else {
        return Vec::new();
    };
    let rest = &statement[at..];
    let list = &rest[rest.find('[').unwrap() + 1..rest.find(']').unwrap()];
    list.split(',')
        .map(|a| a.trim().trim_matches('"').to_string())
        .filter(|a| !a.is_empty() && !a.starts_with('#'))
        .collect()
}

#[test]
fn terraform_readme_documents_every_input_and_output() {
    let readme = tf("README.md");
    for (file, kind) in [("variables.tf", "variable"), ("outputs.tf", "output")] {
        let text = tf(file);
        let opening = format!("{kind} \"");
        let mut count = 0;
        for line in text.lines().filter(|l| l.starts_with(&opening)) {
            let name = line[opening.len()..].split('"').next().unwrap();
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "terraform/README.md does not document {kind} {name}"
            );
            let body = block(&text, &format!("{kind} \"{name}\" {{"));
            assert!(
                body.contains("description = \""),
                "{kind} {name} has no description"
            );
            count += 1;
        }
        assert!(count > 5, "too few {kind}s found in {file}");
    }
}
