//! Command-line definitions (clap derive) and the busybox dispatch on argv[0].
//!
//! Only raw values live here: every flag can also come from its `QP_*` environment variable
//! (containers and Lambda configure through the environment). [`crate::config`] validates them.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::config::scale as scale_defaults;
use crate::config::work as work_defaults;
use crate::image::{Background, Mode, Size};
use crate::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "qp",
    version,
    about = "Turn a bucket of uploaded images into a bucket of model-ready JPEGs.",
    long_about = "Turn a bucket of uploaded images into a bucket of model-ready JPEGs.\n\n\
        One binary, three modes: `qp resize` works on local files, `qp work` drains the S3 \
        notification queue on ECS Fargate, `qp scale` starts Fargate tasks for the backlog (and is \
        the Lambda `bootstrap`); `qp status` and `qp redrive` are for the operator. Every flag can \
        also be set through the QP_* variable shown in its help.",
    after_help = "Examples:\n  qp resize samples --out out --size 224x224 --size 299x299\n  \
        QP_QUEUE_URL=... QP_DEST_BUCKET=... qp work\n  qp scale --dry-run"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start Fargate tasks for the queue backlog (the scheduled Lambda; `bootstrap` runs this).
    #[command(
        after_help = "Example:\n  QP_QUEUE_URL=https://sqs.../uploads QP_CLUSTER=qp \
        QP_TASK_DEFINITION=qp-worker QP_CONTAINER_NAME=worker QP_SUBNETS=subnet-a,subnet-b \
        QP_SECURITY_GROUPS=sg-1 qp scale --dry-run"
    )]
    Scale(ScaleArgs),
    /// Drain the S3 notification queue: resize each uploaded image into the destination bucket.
    #[command(
        after_help = "Example:\n  QP_QUEUE_URL=https://sqs.../uploads QP_DEST_BUCKET=my-processed \
        QP_SIZES=224x224,299x299 qp work"
    )]
    Work(WorkArgs),
    /// Resize local JPEG files and directories (walked recursively) in parallel.
    #[command(after_help = "Examples:\n  qp resize samples --out out\n  \
        qp resize a.jpg b.jpg --size 224x224 --size 299x299 --mode pad --out model-input")]
    Resize(ResizeArgs),
    /// Where the pipeline stands, in one JSON object: queue, DLQ (read, not consumed), worker
    /// tasks by capacity provider, and what the scaler would decide now.
    #[command(after_help = "Example:\n  QP_QUEUE_URL=https://sqs.../uploads \
        QP_DLQ_URL=https://sqs.../uploads-dlq QP_CLUSTER=qp QP_TASK_DEFINITION=qp-worker qp status")]
    Status(StatusArgs),
    /// Move the DLQ's messages back to the queue (after fixing their cause), all or only those
    /// of one qp_reason.
    #[command(after_help = "Examples:\n  QP_QUEUE_URL=https://sqs.../uploads \
        QP_DLQ_URL=https://sqs.../uploads-dlq qp redrive\n  \
        qp redrive --reason object_too_large --dlq-url ... --queue-url ...")]
    Redrive(RedriveArgs),
    /// Send images already in S3 to the queue, as the S3 notifications `qp work` drains.
    #[command(
        after_help = "Examples:\n  QP_QUEUE_URL=https://sqs.../uploads qp enqueue s3://photos/2024/\n  \
        qp enqueue s3://photos s3://archive/scans --suffix .jpg --dry-run\n  \
        qp enqueue s3://photos --start-after 'raw/2024/0815.jpg' --max-per-sec 500"
    )]
    Enqueue(EnqueueArgs),
    /// Check that every source image has its outputs; optionally enqueue the missing ones.
    #[command(
        after_help = "Example:\n  QP_DEST_BUCKET=my-processed QP_SIZES=224x224 \
        qp reconcile s3://photos/2024/ --newer --enqueue"
    )]
    Reconcile(ReconcileArgs),
}

/// The image pipeline's settings, shared by `resize` and `work`.
#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// Output size WxH; repeat (or comma-separate) for several outputs from one decode.
    #[arg(
        long = "size",
        env = "QP_SIZES",
        value_name = "WxH",
        value_delimiter = ',',
        default_value = "224x224",
        value_parser = parse_size
    )]
    pub sizes: Vec<Size>,

    /// fill: cover then centre-crop to exactly WxH; fit: shrink inside WxH keeping the aspect
    /// ratio (never enlarges); pad: fit, then letterbox with --background to exactly WxH.
    #[arg(long, env = "QP_MODE", default_value = "fill", value_parser = parse_mode)]
    pub mode: Mode,

    /// JPEG quality of the outputs, 1-100.
    #[arg(long, env = "QP_QUALITY", default_value_t = crate::image::DEFAULT_QUALITY,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,

    /// Refuse images with more pixels than this, from the header alone, before decoding.
    #[arg(long, env = "QP_MAX_PIXELS", default_value_t = crate::image::DEFAULT_MAX_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,

    /// Colour under transparent pixels (PNG, WebP, GIF, TIFF alpha) and of pad's letterbox:
    /// black, white, gray, #RRGGBB, #RGB or R,G,B.
    #[arg(long, env = "QP_BACKGROUND", value_name = "COLOUR", default_value = "black",
          value_parser = parse_background)]
    pub background: Background,
}

#[derive(Args, Debug)]
pub struct ResizeArgs {
    /// JPEG files, or directories to walk recursively (their structure is mirrored under --out).
    #[arg(required = true, value_name = "FILES_OR_DIRS")]
    pub inputs: Vec<PathBuf>,

    /// Output directory (created if missing). With several sizes each gets a WxH subdirectory.
    #[arg(short, long, default_value = "out")]
    pub out: PathBuf,

    /// Files processed at once (default: the CPUs this process may use).
    #[arg(short, long, env = "QP_JOBS", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,

    #[command(flatten)]
    pub image: ImageArgs,
}

/// Where `qp work` writes its outputs (and `qp reconcile` looks for them).
#[derive(Args, Debug, Clone, Default)]
pub struct DestArgs {
    /// Bucket the resized images are written to.
    #[arg(long, env = "QP_DEST_BUCKET")]
    pub dest_bucket: Option<String>,

    /// Key prefix of the outputs: PREFIX/<source key>, or PREFIX/<W>x<H>/<source key> with
    /// several sizes.
    #[arg(long, env = "QP_DEST_PREFIX", default_value = work_defaults::DEFAULT_DEST_PREFIX)]
    pub dest_prefix: String,
}

#[derive(Args, Debug)]
pub struct WorkArgs {
    /// URL of the SQS queue receiving the S3 event notifications.
    #[arg(long, env = "QP_QUEUE_URL")]
    pub queue_url: Option<String>,

    #[command(flatten)]
    pub dest: DestArgs,

    #[command(flatten)]
    pub image: ImageArgs,

    /// Images downloaded/uploaded at once (default: 8 per CPU).
    #[arg(long, env = "QP_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,

    /// Exit once the queue has stayed empty this long (scale to zero).
    #[arg(long, env = "QP_IDLE_TIMEOUT_SECS",
          default_value_t = work_defaults::DEFAULT_IDLE_TIMEOUT_SECS)]
    pub idle_timeout_secs: u64,

    /// Dead-letter queue for images that can never succeed (not a JPEG, truncated, ...). Without
    /// it they stay on the queue for its redrive policy.
    #[arg(long, env = "QP_DLQ_URL")]
    pub dlq_url: Option<String>,

    /// On SIGTERM, time allowed to finish in-flight images (Fargate Spot gives 120 s in all).
    #[arg(long, env = "QP_SHUTDOWN_GRACE_SECS",
          default_value_t = work_defaults::DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,

    /// Path-style S3 addressing, for emulators and S3-compatible stores.
    #[arg(long, env = "QP_S3_FORCE_PATH_STYLE", action = ArgAction::Set, default_value_t = false,
          value_parser = BoolParser, value_name = "BOOL")]
    pub s3_force_path_style: bool,

    /// Log format: json (CloudWatch), text, or auto (json unless stderr is a terminal).
    #[arg(long, env = "QP_LOG_FORMAT", default_value = "auto")]
    pub log_format: LogFormat,

    /// Visibility timeout for received messages, 1-43200 (default: the queue's own). Messages
    /// still in work are extended every half of it.
    #[arg(long, env = "QP_VISIBILITY_TIMEOUT_SECS",
          value_parser = clap::value_parser!(u32).range(1..=43200))]
    pub visibility_timeout_secs: Option<u32>,

    /// Source objects larger than this are refused before download (permanent failure).
    #[arg(long, env = "QP_MAX_OBJECT_BYTES",
          default_value_t = work_defaults::DEFAULT_MAX_OBJECT_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_object_bytes: u64,

    /// Threads decoding and encoding images (default: the CPUs this task may use, cgroup quota
    /// included).
    #[arg(long, env = "QP_CPUS", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub cpus: Option<u32>,
}

/// The worker tasks: their cluster, and the task definition whose family counts them.
#[derive(Args, Debug, Default, Clone)]
pub struct WorkersArgs {
    /// ECS cluster name or ARN.
    #[arg(long, env = "QP_CLUSTER")]
    pub cluster: Option<String>,

    /// Worker task definition: family, family:revision or ARN. Running tasks are counted by its
    /// family.
    #[arg(long, env = "QP_TASK_DEFINITION")]
    pub task_definition: Option<String>,
}

/// Raw settings of `qp scale`. Numbers and booleans stay strings here: [`crate::config::scale`]
/// parses them with errors that name the variable, so a bad value in the Lambda environment
/// becomes an init error with that message rather than a clap usage error.
#[derive(Args, Debug, Default)]
#[command(mut_args(default_in_help))]
pub struct ScaleArgs {
    /// Compute and print the plan; launch nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Identity of this tick: the client tokens and the qp:event-id tag derive from it, so a
    /// repeated id cannot launch twice. Lambda uses the scheduled event's id; the default here is
    /// the current minute (cli-<unix minute>).
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,

    /// URL of the SQS queue whose depth drives the scaling.
    #[arg(long, env = "QP_QUEUE_URL")]
    pub queue_url: Option<String>,

    #[command(flatten)]
    pub workers: WorkersArgs,

    /// Name of the worker container in the task definition (target of the overrides).
    #[arg(long, env = "QP_CONTAINER_NAME")]
    pub container_name: Option<String>,

    /// Subnets for the tasks, comma-separated (spread across AZs).
    #[arg(long, env = "QP_SUBNETS", value_name = "IDS")]
    pub subnets: Option<String>,

    /// Security groups for the tasks, comma-separated.
    #[arg(long, env = "QP_SECURITY_GROUPS", value_name = "IDS")]
    pub security_groups: Option<String>,

    /// Give tasks a public IP (needed in public subnets without a NAT gateway)
    #[arg(long, env = "QP_ASSIGN_PUBLIC_IP", value_name = "BOOL",
          default_value = scale_defaults::DEFAULT_ASSIGN_PUBLIC_IP)]
    pub assign_public_ip: Option<String>,

    /// Capacity provider strategy: PROVIDER:WEIGHT[:base=N],... e.g.
    /// FARGATE:1:base=1,FARGATE_SPOT:4
    #[arg(long, env = "QP_CAPACITY", value_name = "STRATEGY",
          default_value = scale_defaults::DEFAULT_CAPACITY)]
    pub capacity: Option<String>,

    /// Relaunch tasks Fargate Spot had no capacity for on regular FARGATE
    #[arg(long, env = "QP_SPOT_FALLBACK", value_name = "BOOL",
          default_value = scale_defaults::DEFAULT_SPOT_FALLBACK)]
    pub spot_fallback: Option<String>,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Environment of the launched worker containers (overrides): NAME=VALUE,NAME=VALUE, or a
    /// JSON object {"NAME":"VALUE"} when a value contains a comma.
    #[arg(long, env = "QP_TASK_ENV", value_name = "VARS", hide_env_values = true)]
    pub task_env: Option<String>,

    /// Log format: json (CloudWatch), text, or auto (json unless stderr is a terminal)
    #[arg(long, env = "QP_LOG_FORMAT", value_name = "FORMAT",
          default_value = scale_defaults::DEFAULT_LOG_FORMAT)]
    pub log_format: Option<String>,
}

/// The scaling policy's raw settings: read by `qp scale`, and by `qp status` for the decision it
/// shows.
#[derive(Args, Debug, Default, Clone)]
#[command(mut_args(default_in_help))]
pub struct PolicyArgs {
    /// Backlog (messages) one task is expected to drain
    #[arg(long, env = "QP_MESSAGES_PER_TASK", value_name = "N",
          default_value = scale_defaults::DEFAULT_MESSAGES_PER_TASK)]
    pub messages_per_task: Option<String>,

    /// Upper bound on tasks running at once
    #[arg(long, env = "QP_MAX_TASKS", value_name = "N",
          default_value = scale_defaults::DEFAULT_MAX_TASKS)]
    pub max_tasks: Option<String>,

    /// Upper bound on tasks launched by one tick [default: no bound beyond QP_MAX_TASKS]
    #[arg(long, env = "QP_MAX_LAUNCH_PER_RUN", value_name = "N")]
    pub max_launch_per_run: Option<String>,

    /// Count in-flight (received, not yet deleted) messages as backlog too
    #[arg(long, env = "QP_COUNT_IN_FLIGHT", value_name = "BOOL",
          default_value = scale_defaults::DEFAULT_COUNT_IN_FLIGHT)]
    pub count_in_flight: Option<String>,

    /// Off switch: with false the scaler reports but never launches
    #[arg(long, env = "QP_ENABLED", value_name = "BOOL",
          default_value = scale_defaults::DEFAULT_ENABLED)]
    pub enabled: Option<String>,
}

/// Raw settings of `qp status`: the queue, the DLQ and the tasks as `qp work` and `qp scale`
/// name them, and the scaling policy for the decision it shows.
#[derive(Args, Debug, Default)]
#[command(
    mut_arg("dlq_url", |a| {
        a.help("URL of the dead-letter queue (without it the DLQ is left out of the status)")
    }),
    mut_arg("cluster", |a| a.help("ECS cluster name or ARN of the workers")),
    mut_arg("task_definition", |a| {
        a.help(
            "Worker task definition (family, family:revision or ARN): tasks are counted by its \
             family",
        )
    }),
)]
pub struct StatusArgs {
    #[command(flatten)]
    pub queues: QueuesArgs,

    #[command(flatten)]
    pub workers: WorkersArgs,

    /// Print the JSON object even on a terminal (which otherwise gets a short table).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// The work queue and its dead-letter queue, as the operator's commands take them (each says
/// in its own help what it does with them).
#[derive(Args, Debug, Default, Clone)]
pub struct QueuesArgs {
    /// URL of the queue the source bucket notifies.
    #[arg(long, env = "QP_QUEUE_URL")]
    pub queue_url: Option<String>,

    /// URL of the dead-letter queue.
    #[arg(long, env = "QP_DLQ_URL")]
    pub dlq_url: Option<String>,
}

/// Raw settings of `qp redrive`.
#[derive(Args, Debug, Default)]
#[command(
    mut_arg("queue_url", |a| a.help("The queue the messages go back to (the source bucket's queue)")),
    mut_arg("dlq_url", |a| a.help("The dead-letter queue the messages are taken from")),
)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub queues: QueuesArgs,

    /// Move only the messages whose qp_reason attribute is REASON (e.g. object_too_large after
    /// raising QP_MAX_OBJECT_BYTES). Always moves by receive/send/delete.
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,

    /// Messages moved per second by SQS's move task, 1-500 [default: as fast as SQS goes].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub rate: Option<u32>,

    /// auto: SQS's StartMessageMoveTask, falling back to receive/send/delete where it is not
    /// available (emulators); move-task: only the former; batch: only the latter.
    #[arg(long, default_value = "auto", value_name = "METHOD")]
    pub method: String,

    /// Receive/send/delete: how long a received DLQ message stays hidden while it is sent. A
    /// message whose delete failed reappears in the DLQ after this (and is then a duplicate).
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(1..=43200))]
    pub hold_secs: u32,
}

/// What `qp enqueue` and `qp reconcile` list.
#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Where the images are: s3://BUCKET or s3://BUCKET/PREFIX (several: listed concurrently).
    #[arg(required = true, value_name = "S3_URL")]
    pub targets: Vec<String>,

    /// Key suffixes that are images, any case; repeat or comma-separate [default: .jpg,.jpeg, the
    /// terraform notification filter]
    #[arg(
        long = "suffix",
        env = "QP_SUFFIXES",
        value_name = "SUFFIX",
        value_delimiter = ','
    )]
    pub suffixes: Vec<String>,

    /// Path-style S3 addressing, for emulators and S3-compatible stores.
    #[arg(long, env = "QP_S3_FORCE_PATH_STYLE", action = ArgAction::Set, default_value_t = false,
          value_parser = BoolParser, value_name = "BOOL")]
    pub s3_force_path_style: bool,

    /// Messages sent per second at most (default: as fast as SQS takes them).
    #[arg(long, env = "QP_MAX_PER_SEC", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_sec: Option<u32>,

    /// URL of the SQS queue `qp work` drains.
    #[arg(long, env = "QP_QUEUE_URL")]
    pub queue_url: Option<String>,

    /// Log format: json, text, or auto (json unless stderr is a terminal).
    #[arg(long, env = "QP_LOG_FORMAT", default_value = "auto")]
    pub log_format: LogFormat,
}

#[derive(Args, Debug)]
pub struct EnqueueArgs {
    #[command(flatten)]
    pub list: ListArgs,

    /// List and count (objects and bytes); send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Resume: only keys after this one (the `last_key` of an interrupted run).
    #[arg(long, value_name = "KEY")]
    pub start_after: Option<String>,
}

#[derive(Args, Debug)]
#[command(
    mut_arg("dest_bucket", |a| a.help("Bucket `qp work` writes the outputs to")),
    mut_arg("dest_prefix", |a| a.help("Key prefix of the outputs, as `qp work` has it")),
)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub list: ListArgs,

    #[command(flatten)]
    pub dest: DestArgs,

    /// The worker's image settings: only the sizes name outputs.
    #[command(flatten)]
    pub image: ImageArgs,

    /// Count a source modified after its output as missing.
    #[arg(long)]
    pub newer: bool,

    /// Send the missing sources to the queue (as `qp enqueue` does).
    #[arg(long)]
    pub enqueue: bool,
}

fn parse_size(s: &str) -> Result<Size, String> {
    s.parse()
}

fn parse_background(s: &str) -> Result<Background, String> {
    s.parse()
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

/// The scaler's settings have always shown `[default: ...]` at the end of their help, before
/// `[env: ...]` (clap puts it after): the default, one constant that the parser applies too, is
/// written there.
fn default_in_help(arg: clap::Arg) -> clap::Arg {
    if arg.is_hide_default_value_set() || !arg.get_action().takes_values() {
        return arg;
    }
    let [default] = arg.get_default_values() else {
        return arg;
    };
    let help = format!(
        "{} [default: {}]",
        arg.get_help().map(ToString::to_string).unwrap_or_default(),
        default.to_string_lossy()
    );
    arg.help(help).hide_default_value(true)
}

/// Booleans as every setting takes them ([`crate::config::parse::bool_value`]); the help lists
/// true and false.
#[derive(Clone, Copy, Debug)]
struct BoolParser;

impl TypedValueParser for BoolParser {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<bool, clap::Error> {
        // clap's own message for a bad boolean: "invalid value 'x' for '--flag': value was not
        // a boolean".
        let parse = |s: &str| crate::config::parse::bool_value(s).ok_or("value was not a boolean");
        parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            ["true", "false"].into_iter().map(PossibleValue::new),
        ))
    }
}

/// The applets a busybox-style binary answers to by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applet {
    /// Lambda custom runtimes execute a file called `bootstrap`: that is the scaler.
    Bootstrap,
}

/// Decides the applet from argv[0]'s file stem; None means "parse the arguments as `qp`".
pub fn applet(argv0: &OsStr) -> Option<Applet> {
    match Path::new(argv0).file_stem()?.to_str()? {
        "bootstrap" => Some(Applet::Bootstrap),
        _ => None,
    }
}

/// Parses a full argument vector (argv[0] included), applying the busybox dispatch.
pub fn parse<I>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.first().and_then(|a| applet(a)) == Some(Applet::Bootstrap) {
        args.insert(1, "scale".into());
    }
    Cli::try_parse_from(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn argv0_decides_the_applet() {
        for name in [
            "bootstrap",
            "./bootstrap",
            "/var/runtime/bootstrap",
            "bootstrap.exe",
        ] {
            assert_eq!(applet(OsStr::new(name)), Some(Applet::Bootstrap), "{name}");
        }
        for name in ["qp", "/usr/local/bin/qp", "bootstrapper", "", "/"] {
            assert_eq!(applet(OsStr::new(name)), None, "{name}");
        }
    }

    #[test]
    fn bootstrap_runs_scale() {
        let cli = parse(["/var/task/bootstrap"]).unwrap();
        assert!(matches!(cli.command, Command::Scale(_)));
        let cli = parse(["bootstrap", "--dry-run"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Scale(ScaleArgs { dry_run: true, .. })
        ));
    }

    #[test]
    fn qp_needs_a_subcommand() {
        assert!(parse(["qp"]).is_err());
        let cli = parse(["qp", "resize", "a.jpg", "--size", "224x224,299x299"]).unwrap();
        let Command::Resize(args) = cli.command else {
            panic!("not resize")
        };
        assert_eq!(args.image.sizes.len(), 2);
        assert_eq!(args.out, PathBuf::from("out"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            vec!["qp", "resize", "a.jpg", "--size", "224"],
            vec!["qp", "resize", "a.jpg", "--mode", "stretch"],
            vec!["qp", "resize", "a.jpg", "--quality", "0"],
            vec!["qp", "resize", "a.jpg", "--jobs", "0"],
        ] {
            let err = parse(argv.clone()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
