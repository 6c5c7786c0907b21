//! What the worker needs from S3: read one object whole, write one object. The [`ObjectStore`]
//! trait is the seam (tests use an in-memory store); [`S3Store`] is the SDK implementation and
//! the only place S3 errors are classified.

use std::future::Future;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;

/// An object read whole.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub etag: Option<String>,
}

/// An object to write.
#[derive(Clone, Debug)]
pub struct PutRequest {
    pub bucket: String,
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// User metadata (`x-amz-meta-*`); values must be ASCII (see [`crate::work`]).
    pub metadata: Vec<(&'static str, String)>,
}

/// How an S3 call failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3ErrorKind {
    /// The object (or its bucket) does not exist: it was deleted after the notification.
    NotFound,
    /// Bigger than the worker accepts (`QP_MAX_OBJECT_BYTES`).
    TooLarge,
    /// Archived (Glacier, Deep Archive) and not restored: GET can never succeed as is.
    Archived,
    /// Anything that may succeed later: 5xx, throttling, timeouts, network, credentials, access
    /// denied (a deployment error, fixed by an operator, so the message must not be dropped).
    Transient,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct S3Error {
    pub kind: S3ErrorKind,
    pub message: String,
}

impl S3Error {
    pub fn transient(message: impl Into<String>) -> S3Error {
        S3Error {
            kind: S3ErrorKind::Transient,
            message: message.into(),
        }
    }
}

/// The S3 operations of the worker.
pub trait ObjectStore: Send + Sync + 'static {
    /// Reads `bucket/key` whole, refusing objects over `max_bytes` before reading their body.
    fn get(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Fetched, S3Error>> + Send;

    fn put(&self, req: PutRequest) -> impl Future<Output = Result<(), S3Error>> + Send;
}

/// [`ObjectStore`] over the SDK client.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> S3Store {
        S3Store { client }
    }
}

impl ObjectStore for S3Store {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Fetched, S3Error> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                let kind = match e.as_service_error() {
                    Some(se) if se.is_no_such_key() => S3ErrorKind::NotFound,
                    Some(se) if se.is_invalid_object_state() => S3ErrorKind::Archived,
                    _ => classify(&e),
                };
                S3Error {
                    kind,
                    message: format!("GET s3://{bucket}/{key}: {}", DisplayErrorContext(&e)),
                }
            })?;
        let len = out.content_length().unwrap_or(0).max(0) as u64;
        if len > max_bytes {
            // Dropping the body closes the connection without reading the rest.
            return Err(S3Error {
                kind: S3ErrorKind::TooLarge,
                message: format!(
                    "s3://{bucket}/{key} is {len} bytes, over the limit of {max_bytes} \
                     (raise QP_MAX_OBJECT_BYTES)"
                ),
            });
        }
        let etag = out.e_tag().map(|t| t.trim_matches('"').to_string());
        let body = out.body.collect().await.map_err(|e| {
            S3Error::transient(format!(
                "reading s3://{bucket}/{key}: {}",
                DisplayErrorContext(&e)
            ))
        })?;
        Ok(Fetched {
            body: body.into_bytes().into(),
            etag,
        })
    }

    async fn put(&self, req: PutRequest) -> Result<(), S3Error> {
        let mut call = self
            .client
            .put_object()
            .bucket(&req.bucket)
            .key(&req.key)
            .content_type(req.content_type)
            .content_length(req.body.len() as i64);
        for (k, v) in req.metadata {
            call = call.metadata(k, v);
        }
        call.body(ByteStream::from(req.body))
            .send()
            .await
            .map_err(|e| S3Error {
                // A missing or forbidden destination is a deployment error: every message would
                // fail the same way, and none of them is at fault. Keep them all (transient).
                kind: S3ErrorKind::Transient,
                message: format!(
                    "PUT s3://{}/{}: {}",
                    req.bucket,
                    req.key,
                    DisplayErrorContext(&e)
                ),
            })?;
        Ok(())
    }
}

/// Classifies a failed GET that is not a modelled NoSuchKey/InvalidObjectState: a 404 without a
/// modelled error (NoSuchBucket, a proxy) means gone, everything else may pass.
fn classify(e: &SdkError<GetObjectError, HttpResponse>) -> S3ErrorKind {
    let status = e.raw_response().map(|r| r.status().as_u16());
    match (status, e.code()) {
        (_, Some("NoSuchKey" | "NoSuchBucket" | "NotFound")) | (Some(404), _) => {
            S3ErrorKind::NotFound
        }
        _ => S3ErrorKind::Transient,
    }
}
