//! Queue depth: the three approximate counts of one SQS GetQueueAttributes call.

use std::future::Future;

use anyhow::Context;
use aws_sdk_sqs::types::QueueAttributeName;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

pub trait Depth {
    fn depth(&self, queue_url: &str) -> impl Future<Output = anyhow::Result<QueueDepth>> + Send;
}

impl Depth for aws_sdk_sqs::Client {
    async fn depth(&self, queue_url: &str) -> anyhow::Result<QueueDepth> {
        let out = self
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(super::ecs::sdk_error)
            .with_context(|| format!("reading the depth of {queue_url}"))?;
        let attrs = out.attributes();
        let get = |name: QueueAttributeName| -> anyhow::Result<u64> {
            let raw = attrs
                .and_then(|a| a.get(&name))
                .with_context(|| format!("{queue_url}: no {} in the answer", name.as_str()))?;
            raw.parse()
                .with_context(|| format!("{queue_url}: {} is '{raw}'", name.as_str()))
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        })
    }
}
