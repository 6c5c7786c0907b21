//! SQS message bodies to object references. Pure: a `&str` in, a [`Body`] or an [`EventError`]
//! out; no I/O.
//!
//! Accepted bodies:
//!
//! - an S3 event notification, `{"Records": [...]}`, with any number of records. `ObjectCreated:*`
//!   records become [`ObjectRef`]s; other event names (removals, restores, ...) are skipped, since
//!   a bucket may notify the queue of more than uploads;
//! - the `s3:TestEvent` S3 sends when a notification is configured ([`Body::Test`]: delete it);
//! - either of those wrapped in an SNS envelope (`{"Type": "Notification", "Message": "..."}`),
//!   for buckets that fan out through a topic without raw message delivery;
//! - the EventBridge `Object Created` event (`"source": "aws.s3"`).
//!
//! Anything else is an [`EventError`], which the worker treats as permanent.
//!
//! Keys in S3 notifications are URL form-encoded: `+` is a space, `%xx` are bytes of the UTF-8
//! key (real S3 leaves `/` alone; moto encodes it as `%2F`; both decode the same). For EventBridge
//! the encoding is less well documented, so the decoded form is tried first and the raw key kept as
//! a fallback ([`ObjectRef::alt_key`]).
//!
//! The structs below declare only the fields qp reads, so extra or missing optional fields in a
//! producer's JSON never break parsing (`aws_lambda_events`' full types insist on more).

use serde::Deserialize;

use crate::reason::FailureReason;

/// One S3 object to process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key, exactly as S3 stores it.
    pub key: String,
    /// Another spelling to try if `key` does not exist (the undecoded EventBridge key).
    pub alt_key: Option<String>,
    /// The size the event reported, if any (informational: the GET response decides).
    pub size: Option<u64>,
}

/// What a message asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// The `s3:TestEvent` sent when a notification is configured: nothing to do.
    Test,
    /// Objects to process (possibly none, when every record was not a creation).
    Objects(Vec<ObjectRef>),
}

/// Why a body could not be understood. Always permanent: the same body never parses later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    #[error("message body is not an S3 notification, SNS envelope or EventBridge S3 event")]
    Unrecognized,
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("object key {0:?} is not valid URL-encoded UTF-8")]
    BadKey(String),
}

impl EventError {
    /// The cause's stable name, for logs, metrics and the DLQ's reason attribute.
    pub fn kind(&self) -> FailureReason {
        match self {
            EventError::NotJson(_) | EventError::Unrecognized | EventError::Malformed { .. } => {
                FailureReason::BadBody
            }
            EventError::BadKey(_) => FailureReason::BadKey,
        }
    }
}

/// Parses one SQS message body.
pub fn parse(body: &str) -> Result<Body, EventError> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    parse_value(value, true)
}

fn parse_value(value: serde_json::Value, allow_envelope: bool) -> Result<Body, EventError> {
    let Some(obj) = value.as_object() else {
        return Err(EventError::Unrecognized);
    };
    if obj.contains_key("Records") {
        let n: Notification = from_value(value, "S3 notification")?;
        return notification(n);
    }
    if obj.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Body::Test);
    }
    if allow_envelope
        && obj.get("Type").and_then(|t| t.as_str()) == Some("Notification")
        && obj.contains_key("Message")
    {
        let env: SnsEnvelope = from_value(value, "SNS envelope")?;
        let inner: serde_json::Value =
            serde_json::from_str(&env.message).map_err(|e| EventError::Malformed {
                what: "SNS envelope",
                detail: format!("Message is not JSON: {e}"),
            })?;
        // One level only: an envelope inside an envelope is not something S3 produces.
        return parse_value(inner, false);
    }
    if obj.get("source").and_then(|s| s.as_str()) == Some("aws.s3") && obj.contains_key("detail") {
        let ev: EventBridge = from_value(value, "EventBridge event")?;
        return eventbridge(ev);
    }
    Err(EventError::Unrecognized)
}

fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    what: &'static str,
) -> Result<T, EventError> {
    serde_json::from_value(value).map_err(|e| EventError::Malformed {
        what,
        detail: e.to_string(),
    })
}

fn notification(n: Notification) -> Result<Body, EventError> {
    let mut objects = Vec::with_capacity(n.records.len());
    for r in n.records {
        // Records without an event name are taken as creations (hand-made or replayed bodies).
        if let Some(name) = &r.event_name
            && !is_creation(name)
        {
            continue;
        }
        let key = decode_key(&r.s3.object.key)?;
        objects.push(ObjectRef {
            bucket: r.s3.bucket.name,
            key,
            alt_key: None,
            size: r.s3.object.size,
        });
    }
    Ok(Body::Objects(objects))
}

fn eventbridge(ev: EventBridge) -> Result<Body, EventError> {
    if !ev.detail_type.eq_ignore_ascii_case("Object Created") {
        // Another S3 event type routed to this queue: nothing to produce.
        return Ok(Body::Objects(Vec::new()));
    }
    let raw = ev.detail.object.key;
    let key = decode_key(&raw).unwrap_or_else(|_| raw.clone());
    let alt_key = (key != raw).then_some(raw);
    Ok(Body::Objects(vec![ObjectRef {
        bucket: ev.detail.bucket.name,
        key,
        alt_key,
        size: ev.detail.object.size,
    }]))
}

/// `ObjectCreated:Put`, `s3:ObjectCreated:Copy`, ... (S3 omits the `s3:` prefix in records).
fn is_creation(event_name: &str) -> bool {
    event_name
        .strip_prefix("s3:")
        .unwrap_or(event_name)
        .starts_with("ObjectCreated:")
}

/// Decodes a form-encoded key: `+` is a space, `%xx` a byte; the bytes must be UTF-8.
pub fn decode_key(encoded: &str) -> Result<String, EventError> {
    let plus_decoded = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| EventError::BadKey(encoded.to_string()))
}

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records")]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct Object {
    key: String,
    #[serde(default, deserialize_with = "lenient_size")]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct EventBridge {
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: EventBridgeDetail,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: Bucket,
    object: Object,
}

/// Sizes are numbers in real events but strings in some documentation samples: accept both,
/// and ignore anything else rather than refuse the message over an informational field.
fn lenient_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    fn objects(body: &str) -> Vec<ObjectRef> {
        match parse(body).unwrap() {
            Body::Objects(o) => o,
            Body::Test => panic!("test event"),
        }
    }

    #[test]
    fn s3_put_decodes_plus_and_percent() {
        let o = objects(fixture(include_bytes!(
            "../tests/fixtures/events/s3_put.json"
        )));
        assert_eq!(
            o,
            vec![ObjectRef {
                bucket: "qp-uploads".into(),
                key: "holidays/2024/red flower + suné.jpg".into(),
                alt_key: None,
                size: Some(52431),
            }]
        );
    }

    #[test]
    fn every_creation_record_counts_and_removals_are_skipped() {
        let o = objects(fixture(include_bytes!(
            "../tests/fixtures/events/s3_multi.json"
        )));
        let keys: Vec<&str> = o.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a/cat.jpg", "b/cat.jpg"]);
    }

    #[test]
    fn moto_encodes_slashes_too() {
        let o = objects(fixture(include_bytes!(
            "../tests/fixtures/events/moto_put.json"
        )));
        assert_eq!(o[0].bucket, "src");
        assert_eq!(o[0].key, "deep/a b+c/ünï €.jpg");
    }

    #[test]
    fn test_events_are_recognised() {
        for body in [
            fixture(include_bytes!(
                "../tests/fixtures/events/s3_test_event.json"
            )),
            fixture(include_bytes!(
                "../tests/fixtures/events/moto_test_event.json"
            )),
            fixture(include_bytes!(
                "../tests/fixtures/events/sns_test_event.json"
            )),
        ] {
            assert_eq!(parse(body), Ok(Body::Test), "{body}");
        }
    }

    #[test]
    fn sns_envelope_is_unwrapped() {
        let wrapped = objects(fixture(include_bytes!(
            "../tests/fixtures/events/sns_envelope.json"
        )));
        let direct = objects(fixture(include_bytes!(
            "../tests/fixtures/events/s3_put.json"
        )));
        assert_eq!(wrapped, direct);
    }

    #[test]
    fn eventbridge_object_created() {
        let o = objects(fixture(include_bytes!(
            "../tests/fixtures/events/eventbridge_object_created.json"
        )));
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].bucket, "qp-uploads");
        assert_eq!(o[0].key, "cameras/front door/IMG 0001.jpg");
        assert_eq!(o[0].alt_key, None);
        assert_eq!(o[0].size, Some(52431));
    }

    #[test]
    fn eventbridge_keeps_the_raw_key_as_fallback() {
        let body = r#"{"source":"aws.s3","detail-type":"Object Created",
            "detail":{"bucket":{"name":"b"},"object":{"key":"a+b%20c.jpg"}}}"#;
        let o = objects(body);
        assert_eq!(o[0].key, "a b c.jpg");
        assert_eq!(o[0].alt_key.as_deref(), Some("a+b%20c.jpg"));
        let deleted = r#"{"source":"aws.s3","detail-type":"Object Deleted",
            "detail":{"bucket":{"name":"b"},"object":{"key":"x.jpg"}}}"#;
        assert_eq!(parse(deleted), Ok(Body::Objects(vec![])));
    }

    #[test]
    fn anything_else_is_an_error() {
        let not_s3 = fixture(include_bytes!("../tests/fixtures/events/not_s3.json"));
        let not_json = fixture(include_bytes!("../tests/fixtures/events/not_json.txt"));
        assert_eq!(parse(not_s3), Err(EventError::Unrecognized));
        assert!(matches!(parse(not_json), Err(EventError::NotJson(_))));
        for body in [
            "",
            "[]",
            "42",
            r#"{"Records": "nope"}"#,
            r#"{"Records": [{"s3": {"bucket": {"name": "b"}}}]}"#,
            r#"{"Type": "Notification", "Message": "not json"}"#,
            r#"{"Type": "Notification", "Message": "{\"Type\":\"Notification\",\"Message\":\"{}\"}"}"#,
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.kind(), "bad_body", "{body}: {err}");
        }
    }

    #[test]
    fn keys_must_decode_to_utf8() {
        assert_eq!(decode_key("a%2Fb+c").unwrap(), "a/b c");
        assert_eq!(decode_key("%E2%82%AC").unwrap(), "€");
        assert_eq!(decode_key("100%25").unwrap(), "100%");
        let err = decode_key("bad%FF").unwrap_err();
        assert_eq!(err.kind(), "bad_key");
        let body = r#"{"Records":[{"eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"b"},"object":{"key":"bad%C3"}}}]}"#;
        assert_eq!(parse(body).unwrap_err().kind(), "bad_key");
    }

    #[test]
    fn sizes_may_be_strings_or_missing() {
        let body = r#"{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"12"}}},
            {"s3":{"bucket":{"name":"b"},"object":{"key":"k2"}}}]}"#;
        let o = objects(body);
        assert_eq!(o[0].size, Some(12));
        assert_eq!(o[1].size, None);
    }
}
