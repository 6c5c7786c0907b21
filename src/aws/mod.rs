//! The AWS seam: the only module that calls the SDK. `work` and `scale` are written against the
//! small traits defined in the submodules, so their logic is tested without AWS and the SDK types
//! stay out of the pure code.

pub mod admin;
pub mod depth;
pub mod ecs;
pub mod listing;
pub mod s3;
pub mod sqs;
pub mod sqs_batch;
pub mod sqs_json;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
// Every SDK crate re-exports the same smithy `SdkError`: the ECS names serve SQS's errors too.
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

/// One set of SDK clients, built once per process from the standard chain (`AWS_REGION`,
/// `AWS_ENDPOINT_URL`, credentials from env, profile, ECS task role or Lambda role).
#[derive(Clone, Debug)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ecs: aws_sdk_ecs::Client,
    /// What the clients were built from: region, endpoint, credentials, timeouts (for the
    /// SendMessageBatch qp makes by hand, [`sqs_batch`]).
    pub config: aws_types::SdkConfig,
}

/// How long one attempt of an AWS call may take, its answer included (a download's body is not:
/// stalled-stream protection watches that). The SDK sets no such limit, only one on connecting,
/// so a server that took the connection and never answered would hang a task for good (and a
/// Fargate task that never exits is billed). A timed-out attempt is retried like any transient
/// failure. Longer than SQS's 20 s long poll, and far longer than any other call qp makes.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

impl Clients {
    /// `force_path_style` is for S3 emulators and S3-compatible stores that do not serve
    /// virtual-hosted bucket names.
    pub async fn load(force_path_style: bool) -> Clients {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(force_path_style)
            .build();
        Clients {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(&shared),
            ecs: aws_sdk_ecs::Client::new(&shared),
            config: shared,
        }
    }
}

/// Runs `f` with the clients on a one-thread runtime: what the operator's commands (`qp status`,
/// `qp redrive`) need for their few calls.
pub fn with_clients<T>(f: impl AsyncFnOnce(&Clients) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let clients = Clients::load(false).await;
        f(&clients).await
    })
}

/// A failed AWS call of the [`depth::Depth`] and [`ecs::Tasks`] seams: what was being done, and
/// the SDK's answer as one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {message}")]
pub struct AwsError {
    pub context: String,
    pub message: String,
}

impl AwsError {
    pub fn new(context: impl Into<String>, message: impl std::fmt::Display) -> AwsError {
        AwsError {
            context: context.into(),
            message: message.to_string(),
        }
    }
}

/// An SDK error as one readable line: `Code: message` for a service error (what the AWS console
/// shows), the full cause chain for a transport or timeout error.
pub(crate) fn sdk_message<E>(e: SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let err = se.into_err();
            service_error_line(status, err.code(), err.message())
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

/// A refused call as one line: `Code: message`, the code alone, or the HTTP status when the
/// answer named no code. The SDK's errors and qp's own SendMessageBatch read the same.
pub(crate) fn service_error_line(status: u16, code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        (None, _) => format!("HTTP {status} with no error code"),
    }
}

/// [`sdk_message`] as an error, for callers that add anyhow context.
pub(crate) fn sdk_error<E>(e: SdkError<E>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    anyhow::anyhow!(sdk_message(e))
}
