//! The message `qp enqueue` sends for one object: the S3 `ObjectCreated` notification S3 itself
//! would have written (one record, as S3 sends them), so `qp work` and any other consumer of the
//! queue take it as an upload. Pure.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use crate::aws::listing::Listed;

/// What S3 leaves unencoded in notification keys: letters, digits, `-_.*` (Java's URLEncoder,
/// whose form encoding S3 uses) and `/`. Spaces become `+`, everything else `%XX` of UTF-8.
const KEY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b'/')
    .remove(b' ');

/// Marks the records qp made, for anyone reading the queue (`configurationId`, principal).
pub const CONFIGURATION_ID: &str = "qp-enqueue";

/// A key as S3 writes it in a notification: `a b+c/é.jpg` becomes `a+b%2Bc/%C3%A9.jpg`.
pub fn encode_key(key: &str) -> String {
    // `+` is encoded (%2B) before spaces turn into `+`, so the two stay apart.
    utf8_percent_encode(key, KEY_KEEP)
        .to_string()
        .replace(' ', "+")
}

/// RFC 3339 with milliseconds, as S3 writes `eventTime`.
fn event_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The notification body for one listed object of `bucket`.
pub fn notification(bucket: &str, region: &str, obj: &Listed) -> String {
    let arn = format!("arn:aws:s3:::{bucket}");
    let key = encode_key(&obj.key);
    let no_one = Principal { principal_id: "" };
    let body = Notification {
        records: [Record {
            event_version: "2.1",
            event_source: "aws:s3",
            aws_region: region,
            event_time: event_time(obj.last_modified_ms),
            event_name: "ObjectCreated:Put",
            user_identity: Principal {
                principal_id: CONFIGURATION_ID,
            },
            request_parameters: RequestParameters {
                source_ip_address: "127.0.0.1",
            },
            response_elements: ResponseElements {
                request_id: "",
                id_2: "",
            },
            s3: S3 {
                s3_schema_version: "1.0",
                configuration_id: CONFIGURATION_ID,
                bucket: Bucket {
                    name: bucket,
                    owner_identity: no_one,
                    arn: &arn,
                },
                object: Object {
                    key: &key,
                    size: obj.size,
                    e_tag: &obj.etag,
                },
            },
        }],
    };
    serde_json::to_string(&body).expect("strings and numbers always serialise")
}

// The notification's shape, borrowed from the listing: a `json!` tree instead cost ~30
// allocations a body and 11% of `qp enqueue`'s instructions.
#[derive(Serialize)]
struct Notification<'a> {
    #[serde(rename = "Records")]
    records: [Record<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_version: &'a str,
    event_source: &'a str,
    aws_region: &'a str,
    event_time: String,
    event_name: &'a str,
    user_identity: Principal<'a>,
    request_parameters: RequestParameters<'a>,
    response_elements: ResponseElements<'a>,
    s3: S3<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Principal<'a> {
    principal_id: &'a str,
}

#[derive(Serialize)]
struct RequestParameters<'a> {
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: &'a str,
}

#[derive(Serialize)]
struct ResponseElements<'a> {
    #[serde(rename = "x-amz-request-id")]
    request_id: &'a str,
    #[serde(rename = "x-amz-id-2")]
    id_2: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct S3<'a> {
    s3_schema_version: &'a str,
    configuration_id: &'a str,
    bucket: Bucket<'a>,
    object: Object<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bucket<'a> {
    name: &'a str,
    owner_identity: Principal<'a>,
    arn: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Object<'a> {
    key: &'a str,
    size: u64,
    e_tag: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Body, parse};

    fn listed(key: &str) -> Listed {
        Listed {
            key: key.into(),
            size: 52431,
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            last_modified_ms: 1_740_830_400_000,
        }
    }

    #[test]
    fn keys_are_encoded_as_s3_encodes_them() {
        // The key of the real S3 event fixture, encoded by S3.
        assert_eq!(
            encode_key("holidays/2024/red flower + suné.jpg"),
            "holidays/2024/red+flower+%2B+sun%C3%A9.jpg"
        );
        assert_eq!(
            encode_key("a%20b~c(1)=2&3.JPG"),
            "a%2520b%7Ec%281%29%3D2%263.JPG"
        );
        assert_eq!(
            encode_key("日本/x*y_z-w.jpeg"),
            "%E6%97%A5%E6%9C%AC/x*y_z-w.jpeg"
        );
    }

    #[test]
    fn the_workers_parser_reads_back_every_key() {
        let keys = [
            "plain.jpg",
            "a b/c+d/e%f.jpg",
            "%2F+%20 .jpg",
            "Ünïcødé/日本/写真 1.JPG",
            "deep/1/2/3/4/5/6/7/8/9/x.jpeg",
            "tab\there/nl\nhere.jpg",
            " lead and trail .jpg ",
            "emoji 📷.jpg",
        ];
        for key in keys {
            let body = notification("qp-source", "eu-west-1", &listed(key));
            let Ok(Body::Objects(objects)) = parse(&body) else {
                panic!("{key:?}: {body}")
            };
            assert_eq!(objects.len(), 1);
            assert_eq!(objects[0].key, key);
            assert_eq!(objects[0].bucket, "qp-source");
            assert_eq!(objects[0].size, Some(52431));
        }
    }

    #[test]
    fn the_body_has_the_shape_s3_writes() {
        let body: serde_json::Value =
            serde_json::from_str(&notification("b", "eu-west-1", &listed("k.jpg"))).unwrap();
        let fixture: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../tests/fixtures/events/s3_put.json"))
                .unwrap();
        // Every field S3 writes is there, nested the same way (values differ).
        fn same_shape(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
            match (a, b) {
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    for (k, v) in b {
                        if k == "sequencer" {
                            continue; // S3's own ordering token: nothing qp could honestly fill in
                        }
                        let sub = a.get(k).unwrap_or_else(|| panic!("{path}.{k} missing"));
                        same_shape(sub, v, &format!("{path}.{k}"));
                    }
                }
                (serde_json::Value::Array(a), serde_json::Value::Array(b)) => {
                    same_shape(&a[0], &b[0], &format!("{path}[0]"))
                }
                (a, b) => assert_eq!(
                    std::mem::discriminant(a),
                    std::mem::discriminant(b),
                    "{path}"
                ),
            }
        }
        same_shape(&body, &fixture, "");
        assert_eq!(body["Records"][0]["eventTime"], "2025-03-01T12:00:00.000Z");
        assert_eq!(body["Records"][0]["s3"]["object"]["eTag"], listed("").etag);
    }

    #[test]
    fn event_times() {
        assert_eq!(event_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(event_time(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(event_time(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
