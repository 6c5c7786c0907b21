//! ECS: count the worker tasks, find the ones an event launched, and RunTask. The request and
//! its outcome are plain structs, so the launch logic in [`crate::scale`] is tested with a fake.

use std::future::Future;

use super::{AwsError, sdk_message};
use crate::config::scale::CapacityItem;
use aws_sdk_ecs::operation::run_task::RunTaskError;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    DesiredStatus, KeyValuePair, NetworkConfiguration, Tag, TaskField, TaskOverride,
};

/// Everything one RunTask call sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRequest {
    pub cluster: String,
    pub task_definition: String,
    /// 1-10: ECS refuses more in one call.
    pub count: u32,
    pub capacity: Vec<CapacityItem>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub container_name: String,
    /// Container environment overrides; none sends no overrides.
    pub env: Vec<(String, String)>,
    pub started_by: String,
    pub tags: Vec<(String, String)>,
    /// Idempotency: ECS returns the first call's result for a repeated token (for 24 hours).
    pub client_token: String,
}

/// A task RunTask started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    pub arn: String,
    /// The capacity provider ECS placed it on ("" when ECS does not say).
    pub capacity_provider: String,
}

/// One entry of RunTask's `failures`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub arn: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutcome {
    pub started: Vec<Started>,
    pub failures: Vec<Failure>,
}

/// A RunTask call that failed as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    pub message: String,
    /// ConflictException: the client token was already used with other parameters, i.e. an
    /// earlier delivery of the same event already launched this chunk.
    pub token_conflict: bool,
}

pub trait Tasks {
    /// ARNs of the family's tasks whose desired status is RUNNING (PROVISIONING and PENDING
    /// included), over all pages.
    fn running(
        &self,
        cluster: &str,
        family: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;

    /// How many of `arns` carry the tag `key`=`value`.
    fn count_tagged(
        &self,
        cluster: &str,
        arns: &[String],
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<usize, AwsError>> + Send;

    fn run(&self, req: &RunRequest) -> impl Future<Output = Result<RunOutcome, RunError>> + Send;
}

impl Tasks for aws_sdk_ecs::Client {
    async fn running(&self, cluster: &str, family: &str) -> Result<Vec<String>, AwsError> {
        let mut pages = self
            .list_tasks()
            .cluster(cluster)
            .family(family)
            .desired_status(DesiredStatus::Running)
            .max_results(100)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                AwsError::new(
                    format!("listing tasks of {family} in cluster {cluster}"),
                    sdk_message(e),
                )
            })?;
            arns.extend(page.task_arns().iter().cloned());
        }
        Ok(arns)
    }

    async fn count_tagged(
        &self,
        cluster: &str,
        arns: &[String],
        key: &str,
        value: &str,
    ) -> Result<usize, AwsError> {
        let mut n = 0;
        // DescribeTasks takes at most 100 tasks per call.
        for chunk in arns.chunks(100) {
            let out = self
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(|e| {
                    AwsError::new(
                        format!("describing tasks in cluster {cluster}"),
                        sdk_message(e),
                    )
                })?;
            n += out
                .tasks()
                .iter()
                .filter(|t| {
                    t.tags()
                        .iter()
                        .any(|tag| tag.key() == Some(key) && tag.value() == Some(value))
                })
                .count();
        }
        Ok(n)
    }

    async fn run(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        let build_error = |e: aws_smithy_types::error::operation::BuildError| RunError {
            message: format!("building RunTask: {e}"),
            token_conflict: false,
        };
        let strategy = req
            .capacity
            .iter()
            .map(|c| {
                CapacityProviderStrategyItem::builder()
                    .capacity_provider(&c.provider)
                    .weight(c.weight as i32)
                    .base(c.base as i32)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(build_error)?;
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(req.subnets.clone()))
            .set_security_groups(Some(req.security_groups.clone()))
            .assign_public_ip(if req.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(build_error)?;
        let mut call = self
            .run_task()
            .cluster(&req.cluster)
            .task_definition(&req.task_definition)
            .count(req.count as i32)
            .set_capacity_provider_strategy(Some(strategy))
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .started_by(&req.started_by)
            .client_token(&req.client_token);
        if !req.env.is_empty() {
            let env = req
                .env
                .iter()
                .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build());
            call = call.overrides(
                TaskOverride::builder()
                    .container_overrides(
                        ContainerOverride::builder()
                            .name(&req.container_name)
                            .set_environment(Some(env.collect()))
                            .build(),
                    )
                    .build(),
            );
        }
        for (k, v) in &req.tags {
            call = call.tags(Tag::builder().key(k).value(v).build());
        }
        let out = call.send().await.map_err(|e| RunError {
            token_conflict: matches!(
                e.as_service_error(),
                Some(RunTaskError::ConflictException(_))
            ),
            message: format!("RunTask: {}", sdk_message(e)),
        })?;
        Ok(RunOutcome {
            started: out
                .tasks()
                .iter()
                .map(|t| Started {
                    arn: t.task_arn().unwrap_or_default().to_owned(),
                    capacity_provider: t.capacity_provider_name().unwrap_or_default().to_owned(),
                })
                .collect(),
            failures: out
                .failures()
                .iter()
                .map(|f| Failure {
                    arn: f.arn().map(str::to_owned),
                    reason: f.reason().unwrap_or("unknown").to_owned(),
                    detail: f.detail().map(str::to_owned),
                })
                .collect(),
        })
    }
}
