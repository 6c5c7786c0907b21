//! The worker's decisions as pure functions: what to do with a message given what happened to its
//! records, where outputs go, and what is safe to put in headers and message attributes. No I/O,
//! no clocks: callers pass `now`.

use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::event::EventError;
use crate::image::Size;
use crate::image::names::output_name;
use crate::reason::FailureReason;

/// What happened to one record (one S3 object) of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    Done,
    /// Can never succeed: the image itself, or the object is gone. `reason` is a stable name.
    Permanent {
        key: String,
        reason: FailureReason,
        error: String,
    },
    /// May succeed later: S3 5xx, throttling, timeouts, network, access.
    Transient {
        key: String,
        error: String,
    },
}

/// What a message turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageResult {
    /// The body could not be understood.
    BadBody(EventError),
    /// `s3:TestEvent`.
    Test,
    /// One outcome per record (possibly none).
    Records(Vec<RecordOutcome>),
}

/// What to do with a message once its work is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Everything succeeded (or there was nothing to do).
    Delete,
    /// A permanent failure and a DLQ: send the original body there with these attributes, then
    /// delete it from the work queue.
    DeadLetter(Failure),
    /// Let it come back after its visibility timeout: a transient failure (retry), or a permanent
    /// one without a DLQ (the queue's redrive policy moves it after maxReceiveCount).
    Leave { failure: Failure, permanent: bool },
}

/// The first failure of a message, for logs and the DLQ's attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: FailureReason,
    pub error: String,
    /// The failing object key, if the failure is about one.
    pub key: Option<String>,
    /// How many records failed.
    pub failed: usize,
}

/// Decides a message's fate. Transient failures win over permanent ones: retrying costs one more
/// pass over records that already succeeded (outputs are deterministic), whereas dead-lettering
/// would strand images that only needed another try.
pub fn decide(result: &MessageResult, has_dlq: bool) -> Action {
    let permanent = |failure: Failure| {
        if has_dlq {
            Action::DeadLetter(failure)
        } else {
            Action::Leave {
                failure,
                permanent: true,
            }
        }
    };
    let outcomes = match result {
        MessageResult::Test => return Action::Delete,
        MessageResult::BadBody(e) => {
            return permanent(Failure {
                reason: e.kind(),
                error: e.to_string(),
                key: None,
                failed: 1,
            });
        }
        MessageResult::Records(o) => o,
    };
    let failed = outcomes
        .iter()
        .filter(|o| !matches!(o, RecordOutcome::Done))
        .count();
    if let Some((key, error)) = outcomes.iter().find_map(|o| match o {
        RecordOutcome::Transient { key, error } => Some((key, error)),
        _ => None,
    }) {
        return Action::Leave {
            failure: Failure {
                reason: FailureReason::Transient,
                error: error.clone(),
                key: Some(key.clone()),
                failed,
            },
            permanent: false,
        };
    }
    match outcomes.iter().find_map(|o| match o {
        RecordOutcome::Permanent { key, reason, error } => Some((key, *reason, error)),
        _ => None,
    }) {
        Some((key, reason, error)) => permanent(Failure {
            reason,
            error: error.clone(),
            key: Some(key.clone()),
            failed,
        }),
        None => Action::Delete,
    }
}

/// Message attributes of a dead-lettered message.
pub fn dlq_attributes(f: &Failure, message_id: &str) -> Vec<(&'static str, String)> {
    let mut attrs = vec![
        ("qp_reason", sqs_safe(f.reason.as_str(), 256)),
        ("qp_error", sqs_safe(&f.error, 1024)),
        ("qp_failed_records", f.failed.to_string()),
        ("qp_source_message_id", sqs_safe(message_id, 256)),
    ];
    if let Some(key) = &f.key {
        attrs.push(("qp_key", sqs_safe(key, 1024)));
    }
    // SQS refuses empty attribute values.
    attrs.retain(|(_, v)| !v.is_empty());
    attrs
}

/// The output key of `key` for one size: `PREFIX/NAME`, or `PREFIX/WxH/NAME` when the spec has
/// several sizes, where NAME is the source key itself, with `.jpg` appended for other formats
/// ([`output_name`]: `a/b.png` -> `a/b.png.jpg`). The full source key is kept, so equal names in
/// different folders never collide.
pub fn dest_key(prefix: &str, size: Option<Size>, key: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + key.len() + 12);
    if !prefix.is_empty() {
        out.push_str(prefix);
        out.push('/');
    }
    if let Some(s) = size {
        out.push_str(&s.to_string());
        out.push('/');
    }
    out.push_str(&output_name(key));
    out
}

/// The output key of `key` at `size`, with the worker's rule for when the size names a folder
/// (several sizes configured). The one naming rule, shared by `qp work` and `qp reconcile`.
pub fn output_key(prefix: &str, sizes: &[Size], size: Size, key: &str) -> String {
    dest_key(prefix, (sizes.len() > 1).then_some(size), key)
}

/// Characters escaped in metadata values: HTTP header values must be visible ASCII, and `%` is
/// escaped so the value decodes back to the key exactly.
const HEADER_UNSAFE: &AsciiSet = &CONTROLS.add(b'%');

/// A metadata value (`x-amz-meta-*` header) for an arbitrary string: non-ASCII bytes and
/// controls percent-encoded (UTF-8), everything else as is. `a/b c.jpg` stays readable;
/// `ü.jpg` becomes `%C3%BC.jpg`.
pub fn header_safe(s: &str) -> String {
    utf8_percent_encode(s, HEADER_UNSAFE).to_string()
}

/// A message-attribute value: SQS accepts only XML characters; others become U+FFFD. Cut to at
/// most `max` characters.
pub fn sqs_safe(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' => c,
            c if c >= '\u{10000}' => c,
            _ => '\u{FFFD}',
        })
        .take(max)
        .collect()
}

/// Whether a message visible again at `visible_at` is due for a heartbeat: half of the visibility
/// timeout `vt` or less remains.
pub fn heartbeat_due(visible_at: Instant, now: Instant, vt: Duration) -> bool {
    visible_at.saturating_duration_since(now) <= vt / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(key: &str, reason: FailureReason) -> RecordOutcome {
        RecordOutcome::Permanent {
            key: key.into(),
            reason,
            error: format!("{reason} error"),
        }
    }

    fn transient(key: &str) -> RecordOutcome {
        RecordOutcome::Transient {
            key: key.into(),
            error: "503 SlowDown".into(),
        }
    }

    #[test]
    fn decisions() {
        use RecordOutcome::Done;
        let records = |o: Vec<RecordOutcome>| MessageResult::Records(o);
        for dlq in [false, true] {
            assert_eq!(decide(&MessageResult::Test, dlq), Action::Delete);
            assert_eq!(decide(&records(vec![]), dlq), Action::Delete);
            assert_eq!(decide(&records(vec![Done, Done]), dlq), Action::Delete);
            // Any transient failure: retry the whole message, DLQ or not.
            for o in [
                vec![transient("a")],
                vec![Done, transient("b")],
                vec![perm("a", FailureReason::Truncated), transient("b")],
            ] {
                match decide(&records(o.clone()), dlq) {
                    Action::Leave {
                        permanent: false,
                        failure,
                    } => {
                        assert_eq!(failure.reason, "transient");
                        assert_eq!(
                            failure.failed,
                            o.len() - o.iter().filter(|r| **r == Done).count()
                        );
                    }
                    other => panic!("{o:?}: {other:?}"),
                }
            }
        }
        let bad = records(vec![
            Done,
            perm("b/x.jpg", FailureReason::NotImage),
            perm("c", FailureReason::Truncated),
        ]);
        let expected = Failure {
            reason: FailureReason::NotImage,
            error: "not_image error".into(),
            key: Some("b/x.jpg".into()),
            failed: 2,
        };
        assert_eq!(decide(&bad, true), Action::DeadLetter(expected.clone()));
        assert_eq!(
            decide(&bad, false),
            Action::Leave {
                failure: expected,
                permanent: true
            }
        );
        let body = MessageResult::BadBody(EventError::Unrecognized);
        match decide(&body, true) {
            Action::DeadLetter(f) => {
                assert_eq!((f.reason.as_str(), f.key, f.failed), ("bad_body", None, 1));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&body, false),
            Action::Leave {
                permanent: true,
                ..
            }
        ));
    }

    #[test]
    fn dest_keys_keep_the_full_source_key() {
        let s = Some(Size {
            width: 224,
            height: 160,
        });
        assert_eq!(
            dest_key("processed", None, "a/b/c.jpg"),
            "processed/a/b/c.jpg"
        );
        assert_eq!(
            dest_key("processed", s, "a/c.jpg"),
            "processed/224x160/a/c.jpg"
        );
        assert_eq!(dest_key("", None, "c.jpg"), "c.jpg");
        assert_eq!(dest_key("", s, "x y/ü.jpg"), "224x160/x y/ü.jpg");
        assert_ne!(
            dest_key("p", None, "one/cat.jpg"),
            dest_key("p", None, "two/cat.jpg")
        );
    }

    #[test]
    fn output_keys_name_the_size_only_with_several() {
        let a = Size {
            width: 224,
            height: 224,
        };
        let b = Size {
            width: 299,
            height: 299,
        };
        assert_eq!(output_key("p", &[a], a, "x/y.jpg"), "p/x/y.jpg");
        assert_eq!(output_key("p", &[a, b], b, "x/y.jpg"), "p/299x299/x/y.jpg");
        assert_eq!(output_key("p", &[a], a, "x/y.PNG"), "p/x/y.PNG.jpg");
        // Always a fixed stem followed by the output name (reconcile lists and strips the stem).
        for key in ["", "a b/ü.jpg", "/lead.jpg"] {
            for sizes in [&[a][..], &[a, b][..]] {
                let stem = output_key("out/m", sizes, a, "");
                assert_eq!(output_key("out/m", sizes, a, key), format!("{stem}{key}"));
            }
        }
    }

    #[test]
    fn header_values_are_ascii_and_reversible() {
        assert_eq!(header_safe("a/b c+d.jpg"), "a/b c+d.jpg");
        assert_eq!(header_safe("ü 100%\n.jpg"), "%C3%BC 100%25%0A.jpg");
        let weird = "日本/ä%20\u{7f}x";
        let encoded = header_safe(weird);
        let decoded = percent_encoding::percent_decode_str(&encoded)
            .decode_utf8()
            .unwrap();
        assert_eq!(decoded, weird);
        assert!(
            header_safe(weird)
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b))
        );
    }

    #[test]
    fn attribute_values_are_xml_characters() {
        assert_eq!(sqs_safe("a\u{1}b\u{FFFE}ü😀", 100), "a\u{FFFD}b\u{FFFD}ü😀");
        assert_eq!(sqs_safe("abcdef", 3), "abc");
        let f = Failure {
            reason: FailureReason::Truncated,
            error: "x".repeat(5000),
            key: Some("k".into()),
            failed: 1,
        };
        let attrs = dlq_attributes(&f, "m-1");
        let get = |n: &str| attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("qp_reason"), Some("truncated"));
        assert_eq!(get("qp_error").map(str::len), Some(1024));
        assert_eq!(get("qp_key"), Some("k"));
        assert_eq!(get("qp_source_message_id"), Some("m-1"));
    }

    #[test]
    fn heartbeat_at_half_the_visibility_timeout() {
        let now = Instant::now();
        let vt = Duration::from_secs(30);
        assert!(!heartbeat_due(now + Duration::from_secs(16), now, vt));
        assert!(heartbeat_due(now + Duration::from_secs(15), now, vt));
        assert!(heartbeat_due(now, now, vt));
        // Already past (a stalled runtime): still extend, better late than twice.
        assert!(heartbeat_due(now, now + Duration::from_secs(1), vt));
    }
}
