//! What the operator's commands (`qp status`, `qp redrive`) need beyond the worker's and the
//! scaler's calls: read a queue's messages without consuming them, move messages between queues
//! (by batch or SQS's own move task), and the worker tasks' states. [`Admin`] and [`TaskStates`]
//! are the seams; the SDK clients implement them.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use anyhow::Context;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::ecs::Tasks;
use super::sdk_error;
use super::sqs::{EntryFailure, MAX_BATCH, Queue, Receipt, SqsQueue, failures};

/// The message attribute the worker writes the failure's reason into (see `crate::work`).
pub const REASON_ATTRIBUTE: &str = "qp_reason";

/// A message read without being consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peeked {
    pub id: String,
    /// String message attributes (`qp_reason`, `qp_key`, `qp_error`, ...).
    pub attributes: BTreeMap<String, String>,
    /// When SQS accepted it (`SentTimestamp`), in milliseconds since the epoch.
    pub sent_ms: Option<u64>,
}

/// A message received to be moved: hidden until it is deleted or its hold expires.
#[derive(Clone, Debug)]
pub struct Held {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// Its `qp_reason` attribute, if any.
    pub reason: Option<String>,
    /// Every message attribute, sent on with the body unchanged.
    attributes: HashMap<String, MessageAttributeValue>,
}

impl Held {
    /// A message as the fakes of the tests make it (no attributes beyond the reason).
    pub fn new(id: &str, receipt: &str, body: &str, reason: Option<&str>) -> Held {
        Held {
            id: id.into(),
            receipt: receipt.into(),
            body: body.into(),
            reason: reason.map(Into::into),
            attributes: HashMap::new(),
        }
    }

    pub fn receipt(&self) -> Receipt {
        Receipt {
            id: self.id.clone(),
            handle: self.receipt.clone(),
        }
    }
}

/// The state of an SQS message move task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveProgress {
    /// RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED.
    pub status: String,
    pub moved: u64,
    /// Known once SQS has counted the source queue.
    pub to_move: Option<u64>,
    pub failure: Option<String>,
}

/// The SQS calls of `qp status` and `qp redrive`.
pub trait Admin {
    fn queue_arn(&self, url: &str) -> impl Future<Output = anyhow::Result<String>> + Send;

    /// Up to 10 messages, received with visibility timeout 0 and never deleted: they stay
    /// visible, so reading does not consume them (SQS counts the receive, though).
    fn peek(&self, url: &str) -> impl Future<Output = anyhow::Result<Vec<Peeked>>> + Send;

    /// Up to 10 messages, hidden for `hold_secs`; waits up to `wait_secs` for them.
    fn hold(
        &self,
        url: &str,
        hold_secs: u32,
        wait_secs: u32,
    ) -> impl Future<Output = anyhow::Result<Vec<Held>>> + Send;

    /// Sends up to 10 messages (body and attributes as received); returns those that failed.
    fn send_batch(
        &self,
        url: &str,
        messages: &[&Held],
    ) -> impl Future<Output = anyhow::Result<Vec<EntryFailure>>> + Send;

    /// Deletes up to 10 messages; returns those that failed.
    fn delete_batch(
        &self,
        url: &str,
        receipts: &[Receipt],
    ) -> impl Future<Output = anyhow::Result<Vec<EntryFailure>>> + Send;

    /// Makes up to 10 held messages visible again at once.
    fn release_batch(
        &self,
        url: &str,
        receipts: &[Receipt],
    ) -> impl Future<Output = anyhow::Result<Vec<EntryFailure>>> + Send;

    /// StartMessageMoveTask from `source_arn` to `dest_arn`; returns the task handle.
    fn start_move(
        &self,
        source_arn: &str,
        dest_arn: &str,
        rate: Option<u32>,
    ) -> impl Future<Output = Result<String, MoveError>> + Send;

    /// The progress of the move task `handle` from `source_arn` (ListMessageMoveTasks).
    fn move_progress(
        &self,
        source_arn: &str,
        handle: &str,
    ) -> impl Future<Output = anyhow::Result<MoveProgress>> + Send;
}

/// StartMessageMoveTask refused.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MoveError {
    pub message: String,
}

/// Up to 10 messages with all their attributes, hidden for `visibility` seconds.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    visibility: u32,
    wait: u32,
) -> anyhow::Result<Vec<aws_sdk_sqs::types::Message>> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(MAX_BATCH as i32)
        .visibility_timeout(visibility as i32)
        .wait_time_seconds(wait as i32)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("receiving from {url}"))?;
    Ok(out.messages.unwrap_or_default())
}

impl Admin for aws_sdk_sqs::Client {
    async fn queue_arn(&self, url: &str) -> anyhow::Result<String> {
        let out = self
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("reading the ARN of {url}"))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .with_context(|| format!("{url}: no QueueArn in the answer"))
    }

    async fn peek(&self, url: &str) -> anyhow::Result<Vec<Peeked>> {
        Ok(receive(self, url, 0, 0)
            .await?
            .into_iter()
            .map(|m| Peeked {
                attributes: m
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                    .collect(),
                sent_ms: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|t| t.parse().ok()),
                id: m.message_id.unwrap_or_default(),
            })
            .collect())
    }

    async fn hold(&self, url: &str, hold_secs: u32, wait_secs: u32) -> anyhow::Result<Vec<Held>> {
        Ok(receive(self, url, hold_secs, wait_secs.min(20))
            .await?
            .into_iter()
            .filter_map(|m| {
                let attributes = m.message_attributes.unwrap_or_default();
                Some(Held {
                    reason: attributes
                        .get(REASON_ATTRIBUTE)
                        .and_then(|v| v.string_value())
                        .map(str::to_owned),
                    id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    attributes,
                })
            })
            .collect())
    }

    async fn send_batch(&self, url: &str, messages: &[&Held]) -> anyhow::Result<Vec<EntryFailure>> {
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_message_attributes(
                        (!m.attributes.is_empty()).then(|| m.attributes.clone()),
                    )
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("building a batch for {url}"))?;
        let out = self
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("sending to {url}"))?;
        let receipts: Vec<Receipt> = messages.iter().map(|m| m.receipt()).collect();
        Ok(failures(&receipts, out.failed()))
    }

    async fn delete_batch(
        &self,
        url: &str,
        receipts: &[Receipt],
    ) -> anyhow::Result<Vec<EntryFailure>> {
        Ok(SqsQueue::new(self.clone(), url)
            .delete_batch(receipts)
            .await?)
    }

    async fn release_batch(
        &self,
        url: &str,
        receipts: &[Receipt],
    ) -> anyhow::Result<Vec<EntryFailure>> {
        Ok(SqsQueue::new(self.clone(), url)
            .change_visibility_batch(receipts, 0)
            .await?)
    }

    async fn start_move(
        &self,
        source_arn: &str,
        dest_arn: &str,
        rate: Option<u32>,
    ) -> Result<String, MoveError> {
        let out = self
            .start_message_move_task()
            .source_arn(source_arn)
            // Always named: the worker sends its failures to the DLQ itself, and SQS knows the
            // source queue only of messages its redrive policy moved.
            .destination_arn(dest_arn)
            .set_max_number_of_messages_per_second(rate.map(|r| r as i32))
            .send()
            .await
            .map_err(|e| MoveError {
                message: format!("StartMessageMoveTask from {source_arn}: {}", sdk_error(e)),
            })?;
        Ok(out.task_handle().unwrap_or_default().to_owned())
    }

    async fn move_progress(&self, source_arn: &str, handle: &str) -> anyhow::Result<MoveProgress> {
        let out = self
            .list_message_move_tasks()
            .source_arn(source_arn)
            .max_results(10)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("reading the move tasks of {source_arn}"))?;
        // The handle may be absent from ListMessageMoveTasks' entries once the task is over;
        // then the most recent task is ours (SQS runs one per source queue at a time).
        let results = out.results();
        let entry = results
            .iter()
            .find(|r| r.task_handle() == Some(handle))
            .or_else(|| results.first())
            .with_context(|| format!("{source_arn}: no move task listed"))?;
        Ok(MoveProgress {
            status: entry.status().unwrap_or("UNKNOWN").to_owned(),
            moved: entry.approximate_number_of_messages_moved().max(0) as u64,
            to_move: entry
                .approximate_number_of_messages_to_move()
                .map(|n| n.max(0) as u64),
            failure: entry.failure_reason().map(str::to_owned),
        })
    }
}

/// One worker task: its last status and where it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskState {
    pub arn: String,
    /// PROVISIONING, PENDING, ACTIVATING, RUNNING, ...
    pub last_status: String,
    /// `FARGATE`, `FARGATE_SPOT`, or "" when ECS does not say (launch type instead).
    pub capacity_provider: String,
}

pub trait TaskStates {
    /// The family's tasks whose desired status is RUNNING (as the scaler counts them), with their
    /// states.
    fn task_states(
        &self,
        cluster: &str,
        family: &str,
    ) -> impl Future<Output = anyhow::Result<Vec<TaskState>>> + Send;
}

impl TaskStates for aws_sdk_ecs::Client {
    async fn task_states(&self, cluster: &str, family: &str) -> anyhow::Result<Vec<TaskState>> {
        let arns = self.running(cluster, family).await?;
        let mut states = Vec::with_capacity(arns.len());
        // DescribeTasks takes at most 100 tasks per call.
        for chunk in arns.chunks(100) {
            let out = self
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("describing tasks of {family} in cluster {cluster}"))?;
            states.extend(out.tasks().iter().map(|t| TaskState {
                arn: t.task_arn().unwrap_or_default().to_owned(),
                last_status: t.last_status().unwrap_or("UNKNOWN").to_owned(),
                capacity_provider: t.capacity_provider_name().unwrap_or_default().to_owned(),
            }));
        }
        Ok(states)
    }
}
