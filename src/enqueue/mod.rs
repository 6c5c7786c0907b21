//! `qp enqueue`: objects already in S3 sent to the queue as the notifications S3 would have sent
//! for them, so `qp work` (and the scaler) treat them as uploads.
//!
//! ```text
//!  listing (key order; folders listed ahead, concurrently) ──► suffix filter ──► body
//!        ──► batches of 10 (up to 8 in flight, paced) ──► SendMessageBatch, entries checked
//! ```
//!
//! A signal stops the listing; batches already made are sent and waited for, and the summary
//! names the last key taken, so `--start-after` that key resumes with nothing skipped. The logic
//! is generic over [`Lister`] and [`BatchSender`]; [`main`] wires in the SDK.

pub mod body;
pub mod listing;
pub mod send;

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::aws::Clients;
use crate::aws::listing::{Listed, Lister};
use crate::aws::sqs_batch::{BatchSender, SqsBatchSender};
use crate::cli::EnqueueArgs;
use crate::config::enqueue::{EnqueueConfig, ListConfig};
use send::{Entry, FailedKey, Sender};

/// The JSON object printed at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Objects listed (after `--start-after`).
    pub listed: u64,
    /// Listed objects with an image suffix: what was (or, in a dry run, would be) sent.
    pub matched: u64,
    /// Their total size.
    pub bytes: u64,
    pub sent: u64,
    /// Listed objects without an image suffix.
    pub skipped: u64,
    /// Objects not sent, after retries.
    pub failed: u64,
    /// Entry sends beyond the first.
    pub retried: u64,
    /// The last key taken from the listing: every key up to it was handled (sent, skipped, or
    /// reported in `failed_keys`). `--start-after` this key resumes.
    pub last_key: Option<String>,
    pub dry_run: bool,
    /// Stopped by a signal (or a listing error) before the listing ended.
    pub interrupted: bool,
    pub error: Option<String>,
    pub failed_keys: Vec<FailedKey>,
}

impl Summary {
    /// 0: everything listed was sent (or counted, in a dry run); 1: something was not.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed == 0 && !self.interrupted && self.error.is_none() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// The `qp enqueue` entry: config, then [`run`] in a [`session`].
pub fn main(args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let cfg = EnqueueConfig::from_args(args)?;
    let queue_url = cfg.queue_url.as_deref().filter(|_| !cfg.dry_run);
    let summary = session(&cfg.list, queue_url, async |s3, queue, region| {
        let bar = Progress::new();
        Ok(run(&cfg, s3, queue, &region, &bar, crate::shutdown::signal()).await)
    })?;
    Ok(summary.exit_code())
}

/// What `qp enqueue` and `qp reconcile` share around their `run`: logging, the runtime, the
/// clients (S3, and a sender for `queue_url` if given, with the region for the message bodies),
/// and the result printed as one JSON object on stdout.
pub(crate) fn session<T: Serialize>(
    list: &ListConfig,
    queue_url: Option<&str>,
    work: impl AsyncFnOnce(
        Arc<aws_sdk_s3::Client>,
        Option<Arc<SqsBatchSender>>,
        String,
    ) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    crate::logging::init(list.log_format);
    let result = runtime()?.block_on(async {
        let clients = Clients::load(list.force_path_style).await;
        let queue = match queue_url {
            Some(url) => Some(Arc::new(SqsBatchSender::new(&clients.config, url).await?)),
            None => None,
        };
        work(Arc::new(clients.s3.clone()), queue, region(&clients)).await
    })?;
    print_json(&result)?;
    Ok(result)
}

/// One thread: listing and sending wait on the network, and the per-object work (a JSON body)
/// is microseconds, so more threads would only add hand-offs.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn region(clients: &Clients) -> String {
    clients
        .sqs
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default()
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).context("writing the summary")?;
    writeln!(out).context("writing the summary")?;
    out.flush().context("writing the summary")
}

/// Lists every target and sends each image (or counts it, without a queue) until the listing
/// ends or `shutdown` resolves.
pub async fn run<L: Lister, S: BatchSender>(
    cfg: &EnqueueConfig,
    lister: Arc<L>,
    queue: Option<Arc<S>>,
    region: &str,
    bar: &Progress,
    shutdown: impl Future<Output = ()>,
) -> Summary {
    let mut summary = Summary {
        dry_run: queue.is_none(),
        ..Summary::default()
    };
    let mut sender = queue.map(|q| {
        let bar = bar.clone();
        Sender::new(q, cfg.list.max_per_sec).on_progress(move |s| bar.sent(s.sent))
    });
    let mut listing = listing::list(lister, &cfg.list.targets, cfg.start_after.as_deref());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut shutdown => {
                tracing::info!("signal: listing stopped, waiting for the batches already made");
                summary.interrupted = true;
                break;
            }
            next = listing.next() => next,
        };
        let (bucket, obj) = match next {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("{e}");
                summary.error = Some(e.to_string());
                summary.interrupted = true;
                break;
            }
        };
        summary.listed += 1;
        bar.listed(summary.listed);
        if cfg.list.suffixes.matches(&obj.key) {
            summary.matched += 1;
            summary.bytes += obj.size;
            if let Some(sender) = &mut sender {
                sender.push(entry(&bucket, region, &obj)).await;
            }
        } else {
            summary.skipped += 1;
        }
        summary.last_key = Some(obj.key);
    }
    // Dropping the listing stops the listers that ran ahead.
    drop(listing);
    if let Some(sender) = sender {
        let sent = sender.finish().await;
        summary.sent = sent.sent;
        summary.failed = sent.failed;
        summary.retried = sent.retried;
        summary.failed_keys = sent.failed_keys;
    }
    bar.finish();
    summary
}

/// The message for one object: the path shared by `qp enqueue` and `qp reconcile --enqueue`.
pub fn entry(bucket: &Arc<str>, region: &str, obj: &Listed) -> Entry {
    Entry {
        bucket: bucket.clone(),
        key: obj.key.clone(),
        body: body::notification(bucket, region, obj),
    }
}

/// The progress bar on a terminal (listed, sent, per second); nothing when stderr is not one.
#[derive(Clone)]
pub struct Progress(ProgressBar);

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(ProgressBar::hidden());
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} listed {msg}, sent {human_pos} ({per_sec})",
            )
            .expect("a valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress(bar)
    }

    pub fn hidden() -> Progress {
        Progress(ProgressBar::hidden())
    }

    fn listed(&self, n: u64) {
        // A message is a String: update it every 100 keys, not every key.
        if n.is_multiple_of(100) && !self.0.is_hidden() {
            self.0.set_message(n.to_string());
        }
    }

    fn sent(&self, n: u64) {
        self.0.set_position(n);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
