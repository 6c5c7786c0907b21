//! SendMessageBatch: how `qp enqueue` puts messages on the queue. [`BatchSender`] is the seam;
//! [`SqsBatchSender`] the implementation.
//!
//! The one SQS call qp makes by hand. Through the SDK's fluent call, its per-request plumbing
//! (the orchestrator's interceptors and config layers, the generic JSON serialiser, the retry
//! and identity machinery) cost more CPU than everything else an enqueue does; a batch here is
//! one JSON body written by serde, signed with the SDK's own SigV4 signer and sent through the
//! SDK's own HTTPS connector, with its endpoint from the SDK's own resolver: 0.71x the CPU of a
//! whole enqueue through the SDK (README, "Enqueue"). What the SDK added around the call, this
//! module keeps: a time limit on each attempt, cached credentials refreshed before they expire,
//! and the clock-skew correction. Retries are the caller's (`enqueue::send`), as before.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sqs::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_types::SdkConfig;
use aws_types::service_config::ServiceConfigKey;
use tokio::sync::Mutex;

use super::ATTEMPT_TIMEOUT;
use super::sqs::QueueError;
use super::sqs_json::{QUERY_ERROR, Refusal, read_answer, request_body};
use crate::config::ConfigError;

/// One entry of a batch that SQS refused (the others were accepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailure {
    /// Position of the entry in the batch sent.
    pub index: usize,
    pub code: String,
    pub message: String,
    /// SQS says the request itself was at fault (too large, invalid characters): resending the
    /// same body cannot succeed.
    pub sender_fault: bool,
}

pub trait BatchSender: Send + Sync + 'static {
    /// Sends up to 10 bodies; returns the entries that failed.
    fn send_batch(
        &self,
        bodies: &[String],
    ) -> impl Future<Output = Result<Vec<SendFailure>, QueueError>> + Send;
}

const ACTION: &str = "sending to";

/// Credentials are fetched again this long before they expire (the SDK's lazy cache refreshes
/// from 10 s before; a batch may take up to [`ATTEMPT_TIMEOUT`] once signed).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// SendMessageBatch on one queue, over the SDK's HTTPS connector.
#[derive(Debug)]
pub struct SqsBatchSender {
    http: SharedHttpConnector,
    /// The SQS endpoint the SDK would call (not the queue URL: the JSON protocol posts to the
    /// service endpoint and names the queue in the body).
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
    /// Server time minus local time, in seconds, learnt from an answer that refused qp's
    /// signature as too old or too new (as the SDK does): a laptop's clock may be minutes off.
    skew_secs: AtomicI64,
    url: String,
}

impl SqsBatchSender {
    /// A sender for the queue at `url`, with the region, endpoint, credentials and connect
    /// timeout of `config` (the shared SDK config of [`super::Clients`]).
    pub async fn new(config: &SdkConfig, url: &str) -> Result<SqsBatchSender, ConfigError> {
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| ConfigError::new("AWS_REGION", "no AWS region is set (AWS_REGION)"))?;
        let endpoint = endpoint(config, &region).await?;
        let credentials = config.credentials_provider().ok_or_else(|| {
            ConfigError::new("AWS_ACCESS_KEY_ID", "no AWS credentials provider is set")
        })?;
        let mut settings = HttpConnectorSettings::builder();
        settings.set_connect_timeout(config.timeout_config().and_then(|t| t.connect_timeout()));
        let settings = settings.build();
        let http = aws_smithy_http_client::default_connector(&settings, config.sleep_impl())
            .expect("the SDK's rustls connector is built in (Cargo.toml)");
        Ok(SqsBatchSender {
            http,
            endpoint,
            region,
            credentials,
            cached: Mutex::new(None),
            skew_secs: AtomicI64::new(0),
            url: url.to_owned(),
        })
    }

    fn error(&self, message: impl Into<String>) -> QueueError {
        QueueError::Call {
            action: ACTION,
            url: self.url.clone(),
            message: message.into(),
        }
    }

    /// The cached credentials, fetched again when they are missing or about to expire. The lock
    /// is held while fetching, so batches waiting meanwhile share one fetch.
    async fn credentials(&self) -> Result<Credentials, QueueError> {
        let mut cached = self.cached.lock().await;
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
        };
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let c =
            self.credentials.provide_credentials().await.map_err(|e| {
                self.error(format!("no AWS credentials: {}", DisplayErrorContext(&e)))
            })?;
        *cached = Some(c.clone());
        Ok(c)
    }

    fn now(&self) -> SystemTime {
        let skew = self.skew_secs.load(Ordering::Relaxed);
        let by = Duration::from_secs(skew.unsigned_abs());
        if skew >= 0 {
            SystemTime::now() + by
        } else {
            SystemTime::now() - by
        }
    }

    /// The signed request for `payload`.
    fn request(&self, payload: Vec<u8>, creds: Credentials) -> Result<HttpRequest, QueueError> {
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "AmazonSQS.SendMessageBatch"),
        ];
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("sqs")
            .time(self.now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| self.error(format!("signing the request: {e}")))?
            .into();
        let (signature, _) = SignableRequest::new(
            "POST",
            &self.endpoint,
            headers.iter().copied(),
            SignableBody::Bytes(&payload),
        )
        .and_then(|s| sign(s, &params))
        .map_err(|e| self.error(format!("signing the request: {e}")))?
        .into_parts();
        let mut req = http::Request::builder()
            .method("POST")
            .uri(&self.endpoint)
            .header("user-agent", concat!("qp/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let mut req = req
            .body(SdkBody::from(payload))
            .map_err(|e| self.error(format!("building the request: {e}")))?;
        signature.apply_to_request_http1x(&mut req);
        HttpRequest::try_from(req).map_err(|e| self.error(format!("building the request: {e}")))
    }

    /// One attempt, from fetching the credentials to reading the answer: the refused entries.
    async fn attempt(&self, bodies: &[String]) -> Result<Vec<SendFailure>, QueueError> {
        let payload = request_body(&self.url, bodies);
        let creds = self.credentials().await?;
        let req = self.request(payload, creds)?;
        let mut resp = self
            .http
            .call(req)
            .await
            .map_err(|e| self.error(DisplayErrorContext(&e).to_string()))?;
        let body = ByteStream::new(resp.take_body())
            .collect()
            .await
            .map_err(|e| self.error(format!("reading the answer: {}", DisplayErrorContext(&e))))?
            .into_bytes();
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let refusal = Refusal::read(status, resp.headers().get(QUERY_ERROR), &body);
            if let Some(skew) = refusal.skew(resp.headers().get("date"), SystemTime::now()) {
                self.skew_secs.store(skew, Ordering::Relaxed);
            }
            if refusal.stale_credentials() {
                // Rotated or revoked early: the next attempt fetches them again.
                *self.cached.lock().await = None;
            }
            return Err(self.error(refusal.to_string()));
        }
        read_answer(&body, bodies.len()).map_err(|e| {
            self.error(format!(
                "SQS answered HTTP {status} with a body qp cannot read ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }
}

impl BatchSender for SqsBatchSender {
    /// One attempt within [`ATTEMPT_TIMEOUT`] (credentials included: a provider that hangs
    /// must not hang the run either); the caller retries.
    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<SendFailure>, QueueError> {
        tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(bodies))
            .await
            .map_err(|_| self.error(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())))?
    }
}

/// The SDK's endpoint for SQS in `region`, with `AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL`
/// (or the profile's `endpoint_url`), FIPS and dual-stack as the SDK's client config reads them.
async fn endpoint(config: &SdkConfig, region: &str) -> Result<String, ConfigError> {
    let key = ServiceConfigKey::builder()
        .service_id("SQS")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("every field is set");
    let url = config
        .service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| config.endpoint_url().map(str::to_owned));
    let params = Params::builder()
        .region(region)
        .set_use_fips(config.use_fips())
        .set_use_dual_stack(config.use_dual_stack())
        .set_endpoint(url)
        .build()
        .map_err(|e| ConfigError::new("AWS_ENDPOINT_URL", format!("SQS endpoint: {e}")))?;
    let resolved = DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|e| {
            ConfigError::new(
                "AWS_ENDPOINT_URL",
                format!("no SQS endpoint for region {region}: {e}"),
            )
        })?;
    Ok(resolved.url().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Credentials that expire `ttl` from now, counting how often they were asked for.
    #[derive(Debug)]
    struct Expiring {
        ttl: Duration,
        calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl ProvideCredentials for Expiring {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                Some("token".into()),
                Some(SystemTime::now() + self.ttl),
                "test",
            )))
        }
    }

    async fn sender(
        ttl: Duration,
    ) -> (
        SqsBatchSender,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let config = SdkConfig::builder()
            .region(aws_types::region::Region::new("eu-west-3"))
            .credentials_provider(SharedCredentialsProvider::new(Expiring {
                ttl,
                calls: calls.clone(),
            }))
            .build();
        let sender = SqsBatchSender::new(&config, "https://sqs.eu-west-3.amazonaws.com/1/q")
            .await
            .unwrap();
        (sender, calls)
    }

    #[tokio::test]
    async fn credentials_are_cached_until_shortly_before_they_expire() {
        let (long, calls) = sender(Duration::from_secs(3600)).await;
        for _ in 0..3 {
            assert_eq!(long.credentials().await.unwrap().access_key_id(), "AKID0");
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let (short, calls) = sender(Duration::from_secs(60)).await;
        for n in 0..3 {
            let id = short
                .credentials()
                .await
                .unwrap()
                .access_key_id()
                .to_owned();
            assert_eq!(id, format!("AKID{n}"));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    /// A server on a thread that reads each request whole and gives it `answer` (the status
    /// line onwards), one connection per request.
    fn answering(answer: String) -> std::net::SocketAddr {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        addr
    }

    fn refusal(kind: &str, extra_header: &str) -> String {
        let body = format!(r#"{{"__type":"{kind}","message":"refused"}}"#);
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\n{extra_header}\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn credentials_sqs_calls_expired_are_fetched_again() {
        let (mut s, calls) = sender(Duration::from_secs(3600)).await;
        let addr = answering(refusal("com.amazon.coral.service#ExpiredToken", ""));
        s.endpoint = format!("http://{addr}/");
        for _ in 0..2 {
            let e = s.send_batch(&["x".into()]).await.unwrap_err().to_string();
            assert!(e.contains("ExpiredToken: refused"), "{e}");
        }
        // Valid for an hour by their own word, fetched for each attempt all the same.
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_refusal_for_the_clock_sets_the_skew_from_the_servers_date() {
        let (mut s, _) = sender(Duration::from_secs(3600)).await;
        let ahead = aws_smithy_types::DateTime::from(SystemTime::now() + Duration::from_secs(600))
            .fmt(aws_smithy_types::date_time::Format::HttpDate)
            .unwrap();
        let addr = answering(refusal(
            "com.amazon.coral.service#InvalidSignatureException",
            &format!("date: {ahead}\r\n"),
        ));
        s.endpoint = format!("http://{addr}/");
        let e = s.send_batch(&["x".into()]).await.unwrap_err().to_string();
        assert!(e.contains("InvalidSignatureException"), "{e}");
        let skew = s.skew_secs.load(Ordering::Relaxed);
        assert!((598..=602).contains(&skew), "{skew}");
    }

    #[tokio::test]
    async fn the_request_is_signed_for_sqs_at_the_corrected_time() {
        let (s, _) = sender(Duration::from_secs(3600)).await;
        let header = |req: &HttpRequest, name: &str| req.headers().get(name).unwrap().to_owned();
        let creds = s.credentials().await.unwrap();
        let req = s.request(b"{}".to_vec(), creds.clone()).unwrap();
        assert_eq!(req.uri(), "https://sqs.eu-west-3.amazonaws.com/");
        assert_eq!(header(&req, "x-amz-target"), "AmazonSQS.SendMessageBatch");
        assert_eq!(header(&req, "x-amz-security-token"), "token");
        let auth = header(&req, "authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID0/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-3/sqs/aws4_request"), "{auth}");
        assert!(auth.contains("x-amz-target"), "{auth}");
        // x-amz-date is ISO 8601 without separators: 20231114T222320Z.
        let date = |req: &HttpRequest| {
            let d = header(req, "x-amz-date");
            let (day, time) = (&d[..8], &d[9..15]);
            let iso = format!(
                "{}-{}-{}T{}:{}:{}Z",
                &day[..4],
                &day[4..6],
                &day[6..],
                &time[..2],
                &time[2..4],
                &time[4..]
            );
            aws_smithy_types::DateTime::from_str(
                &iso,
                aws_smithy_types::date_time::Format::DateTime,
            )
            .unwrap()
            .secs()
        };
        let before = date(&req);
        s.skew_secs.store(-3600, Ordering::Relaxed);
        let late = s.request(b"{}".to_vec(), creds).unwrap();
        assert!(
            (before - date(&late) - 3600).abs() <= 2,
            "{before} {}",
            date(&late)
        );
    }

    #[tokio::test]
    async fn the_endpoint_is_the_sdks() {
        let config = |builder: aws_types::sdk_config::Builder| {
            builder
                .region(aws_types::region::Region::new("eu-west-3"))
                .build()
        };
        let plain = config(SdkConfig::builder());
        assert_eq!(
            endpoint(&plain, "eu-west-3").await.unwrap(),
            "https://sqs.eu-west-3.amazonaws.com"
        );
        let fips = config(SdkConfig::builder().use_fips(true));
        assert_eq!(
            endpoint(&fips, "us-east-1").await.unwrap(),
            "https://sqs-fips.us-east-1.amazonaws.com"
        );
        let local = config(SdkConfig::builder().endpoint_url("http://127.0.0.1:4566"));
        assert_eq!(
            endpoint(&local, "eu-west-3").await.unwrap(),
            "http://127.0.0.1:4566"
        );
        let err = endpoint(
            &fips.to_builder().endpoint_url("http://x").build(),
            "us-east-1",
        )
        .await
        .unwrap_err();
        assert_eq!(err.var, "AWS_ENDPOINT_URL", "{}", err.message);
    }
}
