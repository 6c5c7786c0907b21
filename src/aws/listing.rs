//! ListObjectsV2, one page at a time: what `qp enqueue` and `qp reconcile` read. [`Lister`] is
//! the seam (tests use an in-memory bucket); the SDK client implements it.

use std::future::Future;

use aws_sdk_s3::error::DisplayErrorContext;

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Without the quotes S3 puts around it.
    pub etag: String,
    /// Milliseconds since the Unix epoch (S3 keeps whole seconds).
    pub last_modified_ms: i64,
}

/// One page: objects and, with a delimiter, the common prefixes ("folders"), each in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub objects: Vec<Listed>,
    pub prefixes: Vec<String>,
    /// The continuation token of the next page; None on the last.
    pub next: Option<String>,
}

/// A listing call failed after the SDK's retries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ListError(pub String);

/// One page request.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub start_after: Option<&'a str>,
    pub token: Option<&'a str>,
}

pub trait Lister: Send + Sync + 'static {
    fn page(&self, req: PageRequest<'_>) -> impl Future<Output = Result<Page, ListError>> + Send;
}

impl Lister for aws_sdk_s3::Client {
    async fn page(&self, req: PageRequest<'_>) -> Result<Page, ListError> {
        let out = self
            .list_objects_v2()
            .bucket(req.bucket)
            .prefix(req.prefix)
            .set_delimiter(req.delimiter.map(str::to_string))
            .set_start_after(req.start_after.map(str::to_string))
            .set_continuation_token(req.token.map(str::to_string))
            .send()
            .await
            .map_err(|e| {
                ListError(format!(
                    "listing s3://{}/{}: {}",
                    req.bucket,
                    req.prefix,
                    DisplayErrorContext(&e)
                ))
            })?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                    last_modified_ms: o
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_string))
            .collect();
        // A truncated page without a token would loop forever on the first page.
        let next = match (out.is_truncated(), out.next_continuation_token()) {
            (Some(true), Some(t)) => Some(t.to_string()),
            (Some(true), None) => {
                return Err(ListError(format!(
                    "listing s3://{}/{}: a truncated page without a continuation token",
                    req.bucket, req.prefix
                )));
            }
            _ => None,
        };
        Ok(Page {
            objects,
            prefixes,
            next,
        })
    }
}
