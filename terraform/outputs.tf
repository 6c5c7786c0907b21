output "source_bucket" {
  description = "Upload images here (keys under source_prefix, ending in one of source_suffixes)."
  value       = aws_s3_bucket.this["source"].id
}

output "destination_bucket" {
  description = "The resized JPEGs appear here, under dest_prefix."
  value       = aws_s3_bucket.this["destination"].id
}

output "queue_url" {
  description = "The upload notification queue (QP_QUEUE_URL)."
  value       = aws_sqs_queue.uploads.url
}

output "dlq_url" {
  description = "The dead-letter queue: uploads that failed max_receive_count times (QP_DLQ_URL)."
  value       = aws_sqs_queue.dlq.url
}

output "ecr_repository_url" {
  description = "The worker image repository; the pipeline pushes <url>:<commit>."
  value       = aws_ecr_repository.this.repository_url
}

output "cluster_name" {
  description = "The ECS cluster the workers run in."
  value       = aws_ecs_cluster.this.name
}

output "task_definition_family" {
  description = "The worker task definition family; the scaler runs its latest revision."
  value       = aws_ecs_task_definition.worker.family
}

output "scaler_function_name" {
  description = "The scaler Lambda (`qp scale`)."
  value       = aws_lambda_function.scaler.function_name
}

output "task_subnet_ids" {
  description = "Subnets the workers run in (QP_SUBNETS)."
  value       = local.task_subnet_ids
}

output "task_security_group_ids" {
  description = "Security groups of the workers (QP_SECURITY_GROUPS)."
  value       = local.task_security_group_ids
}

output "connection_arn" {
  description = "The CodeStar connection: PENDING until you complete it once in the console."
  value       = aws_codestarconnections_connection.source.arn
}

output "pipeline_name" {
  description = "The CodePipeline that tests, builds and deploys each commit of branch."
  value       = aws_codepipeline.this.name
}

output "notifications_topic_arn" {
  description = "SNS topic of the DLQ alarm and pipeline results (subscribe with alarm_email or yourself)."
  value       = aws_sns_topic.notifications.arn
}

output "dashboard_url" {
  description = "The CloudWatch dashboard: queue, DLQ, tasks, throughput, latency, scaler decisions, last failures."
  value       = "https://${var.region}.console.aws.amazon.com/cloudwatch/home?region=${var.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.this.dashboard_name}"
}
