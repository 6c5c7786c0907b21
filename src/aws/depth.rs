//! Queue depth: the three approximate counts of one SQS GetQueueAttributes call.

use std::future::Future;

use aws_sdk_sqs::types::QueueAttributeName;

use super::{AwsError, sdk_message};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

pub trait Depth {
    fn depth(&self, queue_url: &str) -> impl Future<Output = Result<QueueDepth, AwsError>> + Send;
}

impl Depth for aws_sdk_sqs::Client {
    async fn depth(&self, queue_url: &str) -> Result<QueueDepth, AwsError> {
        let out = self
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| {
                AwsError::new(format!("reading the depth of {queue_url}"), sdk_message(e))
            })?;
        let attrs = out.attributes();
        let get = |name: QueueAttributeName| -> Result<u64, AwsError> {
            let raw = attrs.and_then(|a| a.get(&name)).ok_or_else(|| {
                AwsError::new(queue_url, format!("no {} in the answer", name.as_str()))
            })?;
            raw.parse()
                .map_err(|e| AwsError::new(format!("{queue_url}: {} is '{raw}'", name.as_str()), e))
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        })
    }
}
