//! `qp reconcile`: which source images lack an output, and which outputs lack a source.
//!
//! For each source target the source listing and one destination listing per size run at once,
//! all in key order. An output key is a fixed stem (from [`output_key`], the worker's own naming
//! rule, with the worker's prefix and sizes) followed by the source key, so with the stem cut off
//! every listing is ordered by source key and one merge pass pairs each source with its outputs:
//! memory stays constant whatever the bucket holds.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;

use crate::aws::listing::{ListError, Listed, Lister};
use crate::aws::sqs_batch::BatchSender;
use crate::cli::ReconcileArgs;
use crate::config::enqueue::{ReconcileConfig, Suffixes, Target};
use crate::enqueue::listing::{self, Listing};
use crate::enqueue::send::{FailedKey, Sender};
use crate::enqueue::{entry, session};
use crate::image::Size;
use crate::image::names::output_name;
use crate::work::decide::output_key;

/// Keys named in each list of the report.
pub const KEYS_SHOWN: usize = 100;

/// What one source key (and its outputs) amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An image with every output (not older than it, with `--newer`).
    Complete,
    /// An image lacking an output; `stale`: all there, but one is older than the source.
    Missing { stale: bool },
    /// Outputs (this many) whose source key is not in the source listing.
    Orphans(usize),
    /// Not an image (suffix), or nothing at all.
    Ignored,
}

/// The pure rule: a source (if listed) and, per size, its output (if listed).
pub fn classify(
    source: Option<&Listed>,
    outputs: &[Option<Listed>],
    suffixes: &Suffixes,
    newer: bool,
) -> Verdict {
    match source {
        None => match outputs.iter().flatten().count() {
            0 => Verdict::Ignored,
            n => Verdict::Orphans(n),
        },
        Some(s) if !suffixes.matches(&s.key) => Verdict::Ignored,
        Some(s) => {
            if outputs.iter().any(Option::is_none) {
                Verdict::Missing { stale: false }
            } else if newer
                && outputs
                    .iter()
                    .flatten()
                    .any(|o| o.last_modified_ms < s.last_modified_ms)
            {
                Verdict::Missing { stale: true }
            } else {
                Verdict::Complete
            }
        }
    }
}

/// A count and the first keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Keys {
    pub count: u64,
    pub keys: Vec<String>,
}

impl Keys {
    fn add(&mut self, key: String) {
        self.count += 1;
        if self.keys.len() < KEYS_SHOWN {
            self.keys.push(key);
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub count: u64,
    /// Of those, sources newer than their outputs (`--newer`).
    pub stale: u64,
    /// Source keys (`s3://` of the first targets' bucket is implied).
    pub keys: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub failed_keys: Vec<FailedKey>,
}

/// The JSON object printed at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Source images (keys with an image suffix).
    pub sources: u64,
    /// Sources with every output.
    pub complete: u64,
    pub missing: Missing,
    /// Output keys (destination bucket) whose source key is gone.
    pub orphans: Keys,
    /// Source objects without an image suffix.
    pub skipped: u64,
    /// Outputs expected per source (one per size).
    pub outputs_per_source: usize,
    /// With `--enqueue`: what was sent for the missing sources.
    pub enqueued: Option<Enqueued>,
    pub interrupted: bool,
}

impl Report {
    pub fn exit_code(&self) -> ExitCode {
        if self.missing.count == 0 && !self.interrupted {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// The `qp reconcile` entry: config, then [`run`] in an enqueue session.
pub fn main(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let cfg = ReconcileConfig::from_args(args)?;
    let report = session(
        &cfg.list,
        cfg.queue_url.as_deref(),
        async |s3, queue, region| run(&cfg, s3, queue, &region, crate::shutdown::signal()).await,
    )?;
    Ok(report.exit_code())
}

/// A listing whose keys have a fixed stem cut off, one object ahead.
struct Cursor {
    listing: Listing,
    stem: usize,
    head: Option<Listed>,
    done: bool,
}

impl Cursor {
    fn new<L: Lister>(lister: &Arc<L>, bucket: &str, stem: String, prefix: &str) -> Cursor {
        let target = Target {
            bucket: bucket.to_string(),
            prefix: format!("{stem}{prefix}"),
        };
        Cursor {
            listing: listing::list(lister.clone(), &[target], None),
            stem: stem.len(),
            head: None,
            done: false,
        }
    }

    async fn peek(&mut self) -> Result<Option<&str>, ListError> {
        if self.head.is_none() && !self.done {
            match self.listing.next().await? {
                Some((_, mut obj)) => {
                    obj.key.drain(..self.stem);
                    self.head = Some(obj);
                }
                None => self.done = true,
            }
        }
        Ok(self.head.as_ref().map(|o| o.key.as_str()))
    }

    fn take_if(&mut self, key: &str) -> Option<Listed> {
        self.head.take_if(|h| h.key == key)
    }
}

/// Pairs every source of every target with its outputs, tallies, and (with a queue) sends the
/// missing sources.
pub async fn run<L: Lister, S: BatchSender>(
    cfg: &ReconcileConfig,
    lister: Arc<L>,
    queue: Option<Arc<S>>,
    region: &str,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Report> {
    let mut report = Report {
        outputs_per_source: cfg.sizes.len(),
        ..Report::default()
    };
    let mut sender = queue.map(|q| Sender::new(q, cfg.list.max_per_sec));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut result = Ok(());
    for target in &cfg.list.targets {
        let joined = tokio::select! {
            biased;
            _ = &mut shutdown => {
                report.interrupted = true;
                break;
            }
            r = join_target(cfg, &lister, target, region, &mut report, &mut sender) => r,
        };
        if let Err(e) = joined {
            result = Err(anyhow::Error::new(e));
            break;
        }
    }
    if let Some(sender) = sender {
        let sent = sender.finish().await;
        report.enqueued = Some(Enqueued {
            sent: sent.sent,
            failed: sent.failed,
            retried: sent.retried,
            failed_keys: sent.failed_keys,
        });
    }
    result.map(|_| report)
}

async fn join_target<L: Lister, S: BatchSender>(
    cfg: &ReconcileConfig,
    lister: &Arc<L>,
    target: &Target,
    region: &str,
    report: &mut Report,
    sender: &mut Option<Sender<S>>,
) -> Result<(), ListError> {
    let bucket: Arc<str> = Arc::from(target.bucket.as_str());
    let mut source = Cursor::new(lister, &target.bucket, String::new(), &target.prefix);
    let stems: Vec<String> = cfg.sizes.iter().map(|&s| stem(cfg, s)).collect();
    let same_bucket = target.bucket == cfg.dest_bucket;
    let mut outputs: Vec<Cursor> = stems
        .iter()
        .map(|stem| Cursor::new(lister, &cfg.dest_bucket, stem.clone(), &target.prefix))
        .collect();
    let mut tally = Tally {
        cfg,
        stems: &stems,
        bucket: &bucket,
        region,
        report,
        sender,
    };
    // Sources named for another format (`a.png`) have outputs named after them (`a.png.jpg`),
    // which sort later than the source, maybe after other keys: such a source waits here, under
    // its output name, until every listing has passed that name. Only the keys between `a.png`
    // and `a.png.jpg` pass meanwhile, so this holds one source or two.
    let mut pending: BTreeMap<String, (Listed, Vec<Option<Listed>>)> = BTreeMap::new();
    loop {
        // The smallest key at the head of any listing is the next key to judge.
        let mut next: Option<String> = source.peek().await?.map(str::to_string);
        for o in &mut outputs {
            if let Some(k) = o.peek().await?
                && next.as_deref().is_none_or(|n| k < n)
            {
                next = Some(k.to_string());
            }
        }
        while let Some(entry) = pending.first_entry()
            && next.as_deref().is_none_or(|n| entry.key().as_str() < n)
        {
            let (src, outs) = entry.remove();
            tally.judge(&src.key, Some(&src), &outs).await;
        }
        let Some(key) = next else {
            return Ok(());
        };
        // Sharing the bucket, the outputs are listed as sources too: they are not sources.
        let src = source
            .take_if(&key)
            .filter(|s| !(same_bucket && stems.iter().any(|st| s.key.starts_with(st.as_str()))));
        let outs: Vec<Option<Listed>> = outputs.iter_mut().map(|o| o.take_if(&key)).collect();
        let named = output_name(&key);
        if named == key.as_str() {
            // Outputs named `key` are this source's own.
            tally.judge(&key, src.as_ref(), &outs).await;
            continue;
        }
        if let Some(src) = src {
            let n = outs.len();
            pending.insert(named.into_owned(), (src, vec![None; n]));
        }
        // Outputs named `key` belong to the source `key` minus `.jpg`, if it is waiting;
        // otherwise they are orphans.
        match pending.get_mut(&key) {
            Some((_, found)) => {
                for (slot, o) in found.iter_mut().zip(outs) {
                    if o.is_some() {
                        *slot = o;
                    }
                }
            }
            None => tally.judge(&key, None, &outs).await,
        }
    }
}

/// Where the verdicts of one target go: the report, and the sender with `--enqueue`.
struct Tally<'a, S: BatchSender> {
    cfg: &'a ReconcileConfig,
    stems: &'a [String],
    bucket: &'a Arc<str>,
    region: &'a str,
    report: &'a mut Report,
    sender: &'a mut Option<Sender<S>>,
}

impl<S: BatchSender> Tally<'_, S> {
    /// Judges one key from its source (if listed) and its outputs, one per size (if listed), and
    /// counts the verdict; `key` is the source key, or the output name of orphans.
    async fn judge(&mut self, key: &str, src: Option<&Listed>, outs: &[Option<Listed>]) {
        let report = &mut *self.report;
        match classify(src, outs, &self.cfg.list.suffixes, self.cfg.newer) {
            Verdict::Complete => {
                report.sources += 1;
                report.complete += 1;
            }
            Verdict::Missing { stale } => {
                report.sources += 1;
                report.missing.count += 1;
                report.missing.stale += u64::from(stale);
                if report.missing.keys.len() < KEYS_SHOWN {
                    report.missing.keys.push(key.to_string());
                }
                if let (Some(sender), Some(src)) = (self.sender.as_mut(), src) {
                    sender.push(entry(self.bucket, self.region, src)).await;
                }
            }
            Verdict::Orphans(_) => {
                for (o, stem) in outs.iter().zip(self.stems) {
                    if o.is_some() {
                        report.orphans.add(format!("{stem}{key}"));
                    }
                }
            }
            Verdict::Ignored => report.skipped += u64::from(src.is_some()),
        }
    }
}

/// The part of every output key at `size` before the source key.
fn stem(cfg: &ReconcileConfig, size: Size) -> String {
    output_key(&cfg.dest_prefix, &cfg.sizes, size, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::listing::{Page, PageRequest};
    use crate::aws::sqs_batch::SqsBatchSender;
    use crate::config::enqueue::ListConfig;
    use crate::logging::LogFormat;

    /// Buckets in memory, listed as S3 lists them (one page, key order, `/` folders).
    struct Buckets(Vec<(&'static str, Vec<&'static str>)>);

    impl Lister for Buckets {
        async fn page(&self, req: PageRequest<'_>) -> Result<Page, ListError> {
            let keys = &self.0.iter().find(|(b, _)| *b == req.bucket).unwrap().1;
            let mut keys: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| k.starts_with(req.prefix))
                .filter(|k| req.start_after.is_none_or(|s| *k > s))
                .collect();
            keys.sort_unstable();
            let mut page = Page::default();
            for k in keys {
                let rest = &k[req.prefix.len()..];
                match req
                    .delimiter
                    .and_then(|d| rest.find(d).map(|i| i + d.len()))
                {
                    Some(end) => {
                        let folder = format!("{}{}", req.prefix, &rest[..end]);
                        if page.prefixes.last() != Some(&folder) {
                            page.prefixes.push(folder);
                        }
                    }
                    None => page.objects.push(obj(k, 0)),
                }
            }
            Ok(page)
        }
    }

    /// Sources named for other formats have outputs that sort after them, maybe past other
    /// keys (`a.png` -> `a.png.jpg`, after `a.png.a.jpg`): each is still paired with its own.
    #[tokio::test]
    async fn outputs_named_for_other_formats_are_paired() {
        let buckets = Buckets(vec![
            (
                "src",
                vec![
                    "a.jpg",
                    "a.png",
                    "a.png.a.jpg",
                    "a.png.jpg",
                    "b.gif",
                    "c.txt",
                    "d.tif",
                    "f/g.WEBP",
                    "f/h.bmp",
                ],
            ),
            (
                "dst",
                vec![
                    "out/a.jpg",
                    "out/a.png.jpg",
                    "out/a.png.a.jpg",
                    "out/b.gif.jpg",
                    "out/f/g.WEBP.jpg",
                    "out/f/h.bmp.jpg",
                    "out/q.png",
                    "out/zz.png.jpg",
                ],
            ),
        ]);
        let cfg = ReconcileConfig {
            list: ListConfig {
                targets: vec![Target {
                    bucket: "src".into(),
                    prefix: String::new(),
                }],
                suffixes: Suffixes::new(&[]).unwrap(),
                force_path_style: false,
                max_per_sec: None,
                log_format: LogFormat::Json,
            },
            dest_bucket: "dst".into(),
            dest_prefix: "out".into(),
            sizes: vec![Size {
                width: 224,
                height: 224,
            }],
            newer: false,
            queue_url: None,
        };
        let report = run(
            &cfg,
            Arc::new(buckets),
            None::<Arc<SqsBatchSender>>,
            "us-east-1",
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!((report.sources, report.complete, report.skipped), (8, 6, 1));
        let mut missing = report.missing.keys.clone();
        missing.sort();
        assert_eq!(missing, ["a.png.jpg", "d.tif"]);
        let mut orphans = report.orphans.keys.clone();
        orphans.sort();
        assert_eq!(orphans, ["out/q.png", "out/zz.png.jpg"]);
    }

    fn obj(key: &str, t: i64) -> Listed {
        Listed {
            key: key.into(),
            size: 10,
            etag: "e".into(),
            last_modified_ms: t,
        }
    }

    #[test]
    fn verdicts() {
        let sfx = Suffixes::new(&[]).unwrap();
        let src = obj("a.jpg", 1000);
        let new_out = Some(obj("a.jpg", 2000));
        let old_out = Some(obj("a.jpg", 500));
        let c = |s: Option<&Listed>, o: &[Option<Listed>], newer| classify(s, o, &sfx, newer);
        assert_eq!(
            c(Some(&src), std::slice::from_ref(&new_out), false),
            Verdict::Complete
        );
        assert_eq!(
            c(Some(&src), std::slice::from_ref(&old_out), false),
            Verdict::Complete
        );
        assert_eq!(
            c(Some(&src), std::slice::from_ref(&old_out), true),
            Verdict::Missing { stale: true }
        );
        assert_eq!(
            c(Some(&src), &[new_out.clone(), None], false),
            Verdict::Missing { stale: false }
        );
        assert_eq!(c(Some(&src), &[], false), Verdict::Complete);
        assert_eq!(
            c(None, &[new_out.clone(), None, old_out], false),
            Verdict::Orphans(2)
        );
        assert_eq!(c(None, &[None], false), Verdict::Ignored);
        assert_eq!(c(Some(&obj("a.txt", 0)), &[None], false), Verdict::Ignored);
        // An output whose source exists but is not an image is not an orphan.
        assert_eq!(
            c(Some(&obj("a.txt", 0)), &[Some(obj("a.txt", 0))], false),
            Verdict::Ignored
        );
    }
}
