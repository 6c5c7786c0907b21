//! SendMessageBatch: how `qp enqueue` puts messages on the queue. [`BatchSender`] is the seam;
//! [`SqsBatchSender`] (one queue URL over the SDK client) the implementation.

use std::future::Future;

use aws_sdk_sqs::config::StalledStreamProtectionConfig;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::sqs::{QueueError, batch_call, batch_entries};

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

#[derive(Clone, Debug)]
pub struct SqsBatchSender {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsBatchSender {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsBatchSender {
        // Stalled-stream protection watches a body's throughput as it streams; a batch's request
        // and answer are a few KB written and read at once, so it only adds per-request work.
        let config = client
            .config()
            .to_builder()
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        SqsBatchSender {
            client: aws_sdk_sqs::Client::from_conf(config),
            url: url.into(),
        }
    }
}

impl BatchSender for SqsBatchSender {
    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<SendFailure>, QueueError> {
        let action = "sending to";
        // Entry ids are positions: unique within the call, and mapped back without a lookup.
        let entries = batch_entries(bodies, action, &self.url, |id, body| {
            SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(body)
                .build()
        })?;
        let out = batch_call!(self.client, send_message_batch, &self.url, action, entries)?;
        let mut failed: Vec<SendFailure> = out
            .failed()
            .iter()
            .map(|f| SendFailure {
                index: f.id().parse().unwrap_or(usize::MAX),
                code: f.code().to_string(),
                message: f.message().unwrap_or_default().to_string(),
                sender_fault: f.sender_fault(),
            })
            .collect();
        // An entry neither accepted nor refused must not pass as sent.
        for i in 0..bodies.len() {
            let answered = out.successful().iter().any(|s| s.id() == i.to_string())
                || failed.iter().any(|f| f.index == i);
            if !answered {
                failed.push(SendFailure {
                    index: i,
                    code: "NoResult".into(),
                    message: "SQS returned no result for this entry".into(),
                    sender_fault: false,
                });
            }
        }
        Ok(failed)
    }
}
