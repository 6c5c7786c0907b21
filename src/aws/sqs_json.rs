//! The awsJson 1.0 wire format of SendMessageBatch, pure: the request body, the answer's
//! per-entry results, and an error answer's code, message and clock hint. The call itself is
//! [`super::sqs_batch`]'s.

use std::time::SystemTime;

use aws_smithy_types::date_time::{DateTime, Format};
use serde::{Deserialize, Serialize};

use super::service_error_line;
use super::sqs_batch::SendFailure;

/// The header in which SQS names an error as its older query protocol did
/// (`AWS.SimpleQueueService.NonExistentQueue;Sender`): the codes the SDK reports, and qp.
pub const QUERY_ERROR: &str = "x-amzn-query-error";

#[derive(Serialize)]
struct Request<'a> {
    #[serde(rename = "QueueUrl")]
    queue_url: &'a str,
    #[serde(rename = "Entries")]
    entries: Vec<RequestEntry<'a>>,
}

#[derive(Serialize)]
struct RequestEntry<'a> {
    /// The entry's position: unique within the call, and mapped back without a lookup.
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "MessageBody")]
    body: &'a str,
}

pub fn request_body(url: &str, bodies: &[String]) -> Vec<u8> {
    let request = Request {
        queue_url: url,
        entries: bodies
            .iter()
            .enumerate()
            .map(|(i, body)| RequestEntry {
                id: i.to_string(),
                body,
            })
            .collect(),
    };
    serde_json::to_vec(&request).expect("strings and a list serialise")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    #[serde(default)]
    successful: Vec<Accepted>,
    #[serde(default)]
    failed: Vec<Refused>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Accepted {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Refused {
    id: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    sender_fault: bool,
}

/// The refused entries of a successful answer to a batch of `sent`, and every entry the answer
/// does not mention: one neither accepted nor refused must not pass as sent.
pub fn read_answer(body: &[u8], sent: usize) -> Result<Vec<SendFailure>, serde_json::Error> {
    let answer: Answer = serde_json::from_slice(body)?;
    let mut answered = vec![false; sent];
    let mut failed = Vec::new();
    for id in answer.successful.iter().map(|a| &a.id) {
        if let Some(seen) = id.parse::<usize>().ok().and_then(|i| answered.get_mut(i)) {
            *seen = true;
        }
    }
    for f in answer.failed {
        let index = f.id.parse::<usize>().ok().filter(|&i| i < sent);
        let Some(index) = index else { continue };
        answered[index] = true;
        failed.push(SendFailure {
            index,
            code: f.code,
            message: f.message.unwrap_or_default(),
            sender_fault: f.sender_fault,
        });
    }
    for (index, _) in answered.iter().enumerate().filter(|(_, a)| !**a) {
        failed.push(SendFailure {
            index,
            code: "NoResult".into(),
            message: "SQS returned no result for this entry".into(),
            sender_fault: false,
        });
    }
    Ok(failed)
}

/// A refused call: SQS's error code and message, as the SDK would report them.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    status: u16,
    code: Option<String>,
    message: Option<String>,
    /// The start of a body without an SQS error (a proxy's or load balancer's page): the only
    /// clue to what refused the call.
    other: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

impl Refusal {
    pub fn read(status: u16, query_error: Option<&str>, body: &[u8]) -> Refusal {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (kind, message) = parsed.map_or((None, None), |b| (b.kind, b.message));
        // The query-protocol code first (what the SDK reports), else `__type` without its
        // namespace (`com.amazonaws.sqs#`) or trailing `:` data, as the awsJson protocol says.
        let code = query_error
            .and_then(|h| h.split_once(';').map(|(code, _)| code.to_owned()))
            .or_else(|| {
                kind.map(|k| {
                    let k = k.rsplit_once('#').map_or(k.as_str(), |(_, k)| k);
                    k.split(':').next().unwrap_or(k).to_owned()
                })
            })
            .filter(|c| !c.is_empty());
        let other = if code.is_none() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            String::new()
        };
        Refusal {
            status,
            code,
            message,
            other,
        }
    }

    /// The refusal says the credentials signed with are expired or unknown: cached ones may
    /// have been rotated before the expiry they gave.
    pub fn stale_credentials(&self) -> bool {
        const STALE: [&str; 3] = [
            "ExpiredToken",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
        ];
        self.code
            .as_deref()
            .is_some_and(|code| STALE.iter().any(|c| code.ends_with(c)))
    }

    /// Server time minus `now` in seconds, when the refusal says the signature's time was off
    /// and the answer's `Date` header says by how much.
    pub fn skew(&self, date: Option<&str>, now: SystemTime) -> Option<i64> {
        const SKEW_CODES: [&str; 4] = [
            "RequestTimeTooSkewed",
            "RequestExpired",
            "InvalidSignatureException",
            "SignatureDoesNotMatch",
        ];
        let code = self.code.as_deref()?;
        if !SKEW_CODES.iter().any(|c| code.ends_with(c)) {
            return None;
        }
        let server = DateTime::from_str(date?, Format::HttpDate).ok()?;
        let now = DateTime::from(now);
        Some(server.secs() - now.secs())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = service_error_line(self.status, self.code.as_deref(), self.message.as_deref());
        if self.other.is_empty() {
            write!(f, "{line}")
        } else {
            write!(f, "{line}: {}", self.other)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_request_names_the_queue_and_numbers_the_entries() {
        let bodies = vec!["{\"a\":\"b\\\"c\"}".to_string(), "é\n".to_string()];
        let v: serde_json::Value =
            serde_json::from_slice(&request_body("https://q/1/name", &bodies)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "QueueUrl": "https://q/1/name",
                "Entries": [
                    {"Id": "0", "MessageBody": "{\"a\":\"b\\\"c\"}"},
                    {"Id": "1", "MessageBody": "é\n"},
                ],
            })
        );
    }

    #[test]
    fn an_answer_gives_the_refused_and_the_unmentioned_entries() {
        let body = br#"{"Successful":[{"Id":"0","MessageId":"m","MD5OfMessageBody":"x"},
            {"Id":"3","MessageId":"n","MD5OfMessageBody":"y"}],
            "Failed":[{"Id":"1","SenderFault":true,"Code":"InvalidMessageContents",
            "Message":"bad char"},{"Id":"2","SenderFault":false,"Code":"InternalError"},
            {"Id":"17","SenderFault":false,"Code":"InternalError"}]}"#;
        let failed = read_answer(body, 5).unwrap();
        let got: Vec<(usize, &str, &str, bool)> = failed
            .iter()
            .map(|f| (f.index, f.code.as_str(), f.message.as_str(), f.sender_fault))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "InvalidMessageContents", "bad char", true),
                (2, "InternalError", "", false),
                (
                    4,
                    "NoResult",
                    "SQS returned no result for this entry",
                    false
                ),
            ]
        );
        // All accepted; `Failed` absent, as SQS leaves it.
        assert_eq!(
            read_answer(br#"{"Successful":[{"Id":"0"}]}"#, 1).unwrap(),
            vec![]
        );
        assert!(read_answer(b"<html>", 1).is_err());
    }

    #[test]
    fn a_refusal_reads_as_the_sdk_reports_it() {
        let r = Refusal::read(
            400,
            Some("AWS.SimpleQueueService.NonExistentQueue;Sender"),
            br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no such queue"}"#,
        );
        assert_eq!(
            r.to_string(),
            "AWS.SimpleQueueService.NonExistentQueue: no such queue"
        );
        let r = Refusal::read(
            400,
            None,
            br#"{"__type":"com.amazon.coral.service#ThrottlingException:http://x","Message":"slow down"}"#,
        );
        assert_eq!(r.to_string(), "ThrottlingException: slow down");
        assert_eq!(
            Refusal::read(503, None, b"<html>\n  busy </html>").to_string(),
            "HTTP 503 with no error code: <html> busy </html>"
        );
        assert_eq!(
            Refusal::read(502, None, b"").to_string(),
            "HTTP 502 with no error code"
        );
    }

    #[test]
    fn a_skewed_clock_is_corrected_only_when_sqs_says_so() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // 2023-11-14T22:13:20Z is 1_700_000_000; the server is 10 minutes ahead.
        let date = Some("Tue, 14 Nov 2023 22:23:20 GMT");
        let skewed = Refusal::read(400, None, br##"{"__type":"#RequestTimeTooSkewed"}"##);
        assert_eq!(skewed.skew(date, now), Some(600));
        assert_eq!(skewed.skew(None, now), None);
        let other = Refusal::read(400, None, br##"{"__type":"#AccessDenied"}"##);
        assert_eq!(other.skew(date, now), None);
    }

    #[test]
    fn expired_or_unknown_credentials_are_told_apart() {
        let read = |kind: &str| {
            Refusal::read(403, None, format!(r#"{{"__type":"{kind}"}}"#).as_bytes())
                .stale_credentials()
        };
        assert!(read("com.amazon.coral.service#ExpiredToken"));
        assert!(read("com.amazon.coral.service#UnrecognizedClientException"));
        assert!(!read("com.amazon.coral.service#AccessDeniedException"));
        assert!(!Refusal::read(503, None, b"").stale_credentials());
    }
}
