//! Settings of `qp enqueue` and `qp reconcile`: S3 URLs, suffixes, queue and destination, checked
//! before any AWS call.

use super::{ConfigError, destination, required, resize_spec};
use crate::cli::{EnqueueArgs, ListArgs, ReconcileArgs};
use crate::image::Size;
use crate::logging::LogFormat;

/// The suffixes of terraform's notification filter (`source_suffixes`), compared in any case.
pub const DEFAULT_SUFFIXES: &[&str] = &[
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
];

/// One `s3://BUCKET[/PREFIX]` to list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub bucket: String,
    /// As given after the bucket (may be empty; not forced to end in `/`, as S3 prefixes need not).
    pub prefix: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Which keys are images: a suffix match, ignoring ASCII case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suffixes(Vec<String>);

impl Suffixes {
    pub fn new(given: &[String]) -> Result<Suffixes, ConfigError> {
        let mut out: Vec<String> = Vec::new();
        let given: Vec<&str> = if given.is_empty() {
            DEFAULT_SUFFIXES.to_vec()
        } else {
            given.iter().map(|s| s.trim()).collect()
        };
        for s in given {
            if s.is_empty() {
                return Err(ConfigError::new(
                    "QP_SUFFIXES",
                    "QP_SUFFIXES (or --suffix): an empty suffix would match every key; \
                     name the suffixes, e.g. .jpg,.jpeg",
                ));
            }
            let s = s.to_ascii_lowercase();
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(Suffixes(out))
    }

    pub fn matches(&self, key: &str) -> bool {
        let k = key.as_bytes();
        self.0.iter().any(|s| {
            k.len() >= s.len() && k[k.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
        })
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// What both commands list, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListConfig {
    /// Sorted, with any target inside another one of the same bucket dropped, so no key is
    /// listed twice.
    pub targets: Vec<Target>,
    pub suffixes: Suffixes,
    pub force_path_style: bool,
    pub max_per_sec: Option<u32>,
    pub log_format: LogFormat,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnqueueConfig {
    pub list: ListConfig,
    /// None only in a dry run.
    pub queue_url: Option<String>,
    pub dry_run: bool,
    pub start_after: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileConfig {
    pub list: ListConfig,
    pub dest_bucket: String,
    /// Normalised as `qp work` normalises it (no leading or trailing `/`).
    pub dest_prefix: String,
    /// Distinct sizes, in the worker's order.
    pub sizes: Vec<Size>,
    pub newer: bool,
    /// Some when `--enqueue` was given.
    pub queue_url: Option<String>,
}

impl EnqueueConfig {
    pub fn from_args(args: EnqueueArgs) -> Result<EnqueueConfig, ConfigError> {
        let queue_url = if args.dry_run {
            args.list.queue_url.clone().filter(|u| !u.trim().is_empty())
        } else {
            Some(queue_url(args.list.queue_url.clone())?)
        };
        let start_after = args.start_after.filter(|k| !k.is_empty());
        Ok(EnqueueConfig {
            list: list_config(args.list)?,
            queue_url,
            dry_run: args.dry_run,
            start_after,
        })
    }
}

impl ReconcileConfig {
    pub fn from_args(args: ReconcileArgs) -> Result<ReconcileConfig, ConfigError> {
        // The worker's own settings, so the keys are the ones it writes.
        let (dest_bucket, dest_prefix) = destination(args.dest)?;
        let sizes = resize_spec(&args.image)?.sizes;
        let queue_url = if args.enqueue {
            Some(queue_url(args.list.queue_url.clone())?)
        } else {
            None
        };
        let list = list_config(args.list)?;
        if dest_prefix.is_empty() && list.targets.iter().any(|t| t.bucket == dest_bucket) {
            return Err(ConfigError::new(
                "QP_DEST_PREFIX",
                format!(
                    "QP_DEST_PREFIX is empty and the destination bucket {dest_bucket} is also a \
                     source: outputs and sources could not be told apart"
                ),
            ));
        }
        Ok(ReconcileConfig {
            list,
            dest_bucket,
            dest_prefix,
            sizes,
            newer: args.newer,
            queue_url,
        })
    }
}

fn queue_url(v: Option<String>) -> Result<String, ConfigError> {
    Ok(required(v, "QP_QUEUE_URL", "queue-url")?.trim().to_string())
}

fn list_config(args: ListArgs) -> Result<ListConfig, ConfigError> {
    let mut targets = args
        .targets
        .iter()
        .map(|t| parse_s3_url(t))
        .collect::<Result<Vec<_>, _>>()?;
    targets.sort();
    targets.dedup();
    // Sorted, a target covered by another comes right after one that covers it.
    let mut kept: Vec<Target> = Vec::with_capacity(targets.len());
    for t in targets {
        let covered = kept
            .iter()
            .any(|k| k.bucket == t.bucket && t.prefix.starts_with(&k.prefix));
        if !covered {
            kept.push(t);
        }
    }
    Ok(ListConfig {
        targets: kept,
        suffixes: Suffixes::new(&args.suffixes)?,
        force_path_style: args.s3_force_path_style,
        max_per_sec: args.max_per_sec,
        log_format: args.log_format,
    })
}

/// `s3://BUCKET`, `s3://BUCKET/`, `s3://BUCKET/PREFIX`: the prefix is kept exactly (a prefix
/// need not end in `/`: `s3://b/2024-` lists `2024-01/...` and `2024-02/...`).
pub fn parse_s3_url(url: &str) -> Result<Target, ConfigError> {
    let bad = |why: &str| {
        ConfigError::new(
            "S3_URL",
            format!("'{url}' {why}; expected s3://BUCKET[/PREFIX]"),
        )
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("is not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // S3's bucket naming rules (3-63 of a-z 0-9 . -), loosely: enough to catch a typo early.
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return Err(bad("has no valid bucket name"));
    }
    Ok(Target {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(mode: &str, argv: &[&str]) -> Command {
        let mut full = vec!["qp", mode];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().command
    }

    fn enqueue(argv: &[&str]) -> Result<EnqueueConfig, ConfigError> {
        let Command::Enqueue(a) = parse("enqueue", argv) else {
            unreachable!()
        };
        EnqueueConfig::from_args(a)
    }

    fn reconcile(argv: &[&str]) -> Result<ReconcileConfig, ConfigError> {
        let Command::Reconcile(a) = parse("reconcile", argv) else {
            unreachable!()
        };
        ReconcileConfig::from_args(a)
    }

    #[test]
    fn s3_urls() {
        let t = |b: &str, p: &str| Target {
            bucket: b.into(),
            prefix: p.into(),
        };
        assert_eq!(parse_s3_url("s3://photos"), Ok(t("photos", "")));
        assert_eq!(parse_s3_url("s3://photos/"), Ok(t("photos", "")));
        assert_eq!(parse_s3_url("s3://photos/a b/"), Ok(t("photos", "a b/")));
        assert_eq!(
            parse_s3_url("s3://my.bucket-1/2024-"),
            Ok(t("my.bucket-1", "2024-"))
        );
        for bad in [
            "photos",
            "https://photos/x",
            "s3://",
            "s3:///x",
            "s3://Photos",
            "s3://ab",
        ] {
            let err = parse_s3_url(bad).unwrap_err();
            assert!(
                err.message.contains(bad) && err.message.contains("s3://BUCKET"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn suffixes_default_to_terraforms_and_ignore_case() {
        let s = Suffixes::new(&[]).unwrap();
        for key in [
            "a.jpg", "b/C.JPG", "x.Jpeg", "y.jpeg", "p.PNG", "w.webp", "t.tif",
        ] {
            assert!(s.matches(key), "{key}");
        }
        for key in ["a.heic", "jpg", "a.jpg.txt", "a/", "ä.jp"] {
            assert!(!s.matches(key), "{key}");
        }
        let s = Suffixes::new(&[".PNG".into(), " .png ".into()]).unwrap();
        assert_eq!(s.as_slice(), [".png"]);
        assert!(s.matches("x.png") && !s.matches("x.jpg"));
        assert!(
            Suffixes::new(&["".into()])
                .unwrap_err()
                .message
                .contains("QP_SUFFIXES")
        );
    }

    #[test]
    fn enqueue_settings() {
        let err = enqueue(&["s3://photos"]).unwrap_err();
        assert!(err.message.contains("QP_QUEUE_URL"), "{err}");
        // A dry run sends nothing, so it needs no queue.
        let c = enqueue(&["s3://photos", "--dry-run"]).unwrap();
        assert_eq!(c.queue_url, None);
        let c = enqueue(&[
            "s3://b-1/x/",
            "s3://a-1",
            "s3://b-1/x/y/",
            "s3://b-1/w",
            "s3://a-1/deep/",
            "--queue-url",
            " https://q ",
            "--start-after",
            "x/k.jpg",
            "--suffix",
            ".JPG,.png",
        ])
        .unwrap();
        let targets: Vec<String> = c.list.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(targets, ["s3://a-1/", "s3://b-1/w", "s3://b-1/x/"]);
        assert_eq!(c.queue_url.as_deref(), Some("https://q"));
        assert_eq!(c.start_after.as_deref(), Some("x/k.jpg"));
        assert_eq!(c.list.suffixes.as_slice(), [".jpg", ".png"]);
        let err = enqueue(&["s3://UPPER", "--dry-run"]).unwrap_err();
        assert!(err.message.contains("s3://UPPER"), "{err}");
    }

    #[test]
    fn reconcile_settings_are_the_workers() {
        let err = reconcile(&["s3://photos"]).unwrap_err();
        assert!(err.message.contains("QP_DEST_BUCKET"), "{err}");
        let c = reconcile(&[
            "s3://photos",
            "--dest-bucket",
            "out",
            "--dest-prefix",
            "/models/",
            "--size",
            "224x224,299x299,224x224",
        ])
        .unwrap();
        assert_eq!(c.dest_prefix, "models");
        assert_eq!(c.sizes.len(), 2);
        assert_eq!(c.queue_url, None);
        let err = reconcile(&["s3://photos", "--dest-bucket", "out", "--enqueue"]).unwrap_err();
        assert!(err.message.contains("QP_QUEUE_URL"), "{err}");
        let err = reconcile(&[
            "s3://photos",
            "--dest-bucket",
            "photos",
            "--dest-prefix",
            "",
        ])
        .unwrap_err();
        assert!(err.message.contains("QP_DEST_PREFIX"), "{err}");
    }
}
