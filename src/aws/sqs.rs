//! What the worker needs from SQS: receive, delete and change visibility in batches, send (to the
//! dead-letter queue), and read the queue's visibility timeout. [`Queue`] is the seam;
//! [`SqsQueue`] (one queue URL over the SDK client) the implementation.

use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};

/// A received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// `ApproximateReceiveCount` (1 the first time).
    pub receive_count: u32,
}

/// A message to act on in a batch call: its id (for logs) and receipt handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    pub handle: String,
}

/// One entry of a batch call that failed (the others succeeded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFailure {
    pub id: String,
    pub code: String,
    pub message: String,
}

/// A whole SQS call failed (the worker's calls: after the SDK's own retries; SendMessageBatch:
/// one attempt, retried by `enqueue::send`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The call was refused or never answered: `action` is what it did ("receiving from").
    #[error("{action} {url}: {message}")]
    Call {
        action: &'static str,
        url: String,
        message: String,
    },
    /// GetQueueAttributes answered without the queue's visibility timeout.
    #[error("{url}: no VisibilityTimeout attribute")]
    NoVisibilityTimeout { url: String },
}

impl QueueError {
    pub fn call(action: &'static str, url: &str, e: impl std::error::Error) -> QueueError {
        QueueError::Call {
            action,
            url: url.to_owned(),
            message: DisplayErrorContext(e).to_string(),
        }
    }
}

/// Largest batch SQS accepts in one call.
pub const MAX_BATCH: usize = 10;

/// The SQS operations of the worker, on one queue.
pub trait Queue: Send + Sync + 'static {
    /// Long-polls for up to `max` (1-10) messages. `visibility` overrides the queue's timeout.
    fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Option<u32>,
    ) -> impl Future<Output = Result<Vec<Message>, QueueError>> + Send;

    /// Deletes up to [`MAX_BATCH`] messages; returns the entries that failed.
    fn delete_batch(
        &self,
        entries: &[Receipt],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send;

    /// Sets the visibility timeout of up to [`MAX_BATCH`] messages to `secs` from now.
    fn change_visibility_batch(
        &self,
        entries: &[Receipt],
        secs: u32,
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send;

    /// Sends one message with string attributes.
    fn send(
        &self,
        body: &str,
        attributes: &[(&'static str, String)],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The queue's default visibility timeout, in seconds.
    fn visibility_timeout(&self) -> impl Future<Output = Result<u32, QueueError>> + Send;
}

/// [`Queue`] over the SDK client.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Sends one SQS batch call (`$op`: `delete_message_batch`, ...) of `$entries` to `$url`; the
/// error says `$action` (the SDK's fluent builders share no trait a function could take).
macro_rules! batch_call {
    ($client:expr, $op:ident, $url:expr, $action:expr, $entries:expr) => {
        $client
            .$op()
            .queue_url($url)
            .set_entries(Some($entries))
            .send()
            .await
            .map_err(|e| QueueError::call($action, $url, e))
    };
}

/// One request entry per item, each with its position as id (see [`failures`]); `action` and
/// `url` name the call in the error.
pub(crate) fn batch_entries<I, T, E: std::error::Error>(
    items: &[I],
    action: &'static str,
    url: &str,
    build: impl Fn(String, &I) -> Result<T, E>,
) -> Result<Vec<T>, QueueError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| build(i.to_string(), item).map_err(|e| QueueError::call(action, url, e)))
        .collect()
}

/// Batch entry ids are the entry's position: message ids would do, except that the same message
/// received twice (SQS is at-least-once) would make the whole batch fail as not distinct.
pub(crate) fn failures(
    entries: &[Receipt],
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> Vec<EntryFailure> {
    failed
        .iter()
        .map(|f| EntryFailure {
            id: f
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| entries.get(i))
                .map_or_else(|| f.id().to_string(), |r| r.id.clone()),
            code: f.code().to_string(),
            message: f.message().unwrap_or_default().to_string(),
        })
        .collect()
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Option<u32>,
    ) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .set_visibility_timeout(visibility.map(|v| v as i32))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| QueueError::call("receiving from", &self.url, e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Message {
                    id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn delete_batch(&self, entries: &[Receipt]) -> Result<Vec<EntryFailure>, QueueError> {
        let action = "deleting from";
        let batch = batch_entries(entries, action, &self.url, |id, r| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(&r.handle)
                .build()
        })?;
        let out = batch_call!(self.client, delete_message_batch, &self.url, action, batch)?;
        Ok(failures(entries, out.failed()))
    }

    async fn change_visibility_batch(
        &self,
        entries: &[Receipt],
        secs: u32,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let action = "changing visibility on";
        let batch = batch_entries(entries, action, &self.url, |id, r| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(&r.handle)
                .visibility_timeout(secs as i32)
                .build()
        })?;
        let out = batch_call!(
            self.client,
            change_message_visibility_batch,
            &self.url,
            action,
            batch
        )?;
        Ok(failures(entries, out.failed()))
    }

    async fn send(
        &self,
        body: &str,
        attributes: &[(&'static str, String)],
    ) -> Result<(), QueueError> {
        let mut call = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError::call("sending to", &self.url, e))?;
            call = call.message_attributes(*name, value);
        }
        call.send()
            .await
            .map_err(|e| QueueError::call("sending to", &self.url, e))?;
        Ok(())
    }

    async fn visibility_timeout(&self) -> Result<u32, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| QueueError::call("reading the attributes of", &self.url, e))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| QueueError::NoVisibilityTimeout {
                url: self.url.clone(),
            })
    }
}
