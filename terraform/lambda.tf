# The scaler: `qp scale` as a Lambda custom runtime (the zip's `bootstrap` is the qp binary),
# invoked by an EventBridge schedule.

resource "aws_cloudwatch_log_group" "scaler" {
  #checkov:skip=CKV_AWS_158:Encrypted by CloudWatch Logs' own key; a customer-managed key costs while idle. The logs hold queue depths and task counts.
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days (30 by default): one line per tick has little value after a month.
  name              = "/aws/lambda/${var.name}-scale"
  retention_in_days = var.log_retention_days
}

locals {
  # The environment of `qp scale` (one place: a test in tests/packaging.rs checks it holds every
  # variable in qp::config::scale::REQUIRED_ENV and nothing qp does not know). null = qp's default.
  scaler_env = {
    QP_QUEUE_URL          = aws_sqs_queue.uploads.url
    QP_CLUSTER            = aws_ecs_cluster.this.name
    QP_TASK_DEFINITION    = aws_ecs_task_definition.worker.family # latest ACTIVE revision: the pipeline's
    QP_CONTAINER_NAME     = var.container_name
    QP_SUBNETS            = join(",", local.task_subnet_ids)
    QP_SECURITY_GROUPS    = join(",", local.task_security_group_ids)
    QP_ASSIGN_PUBLIC_IP   = var.assign_public_ip
    QP_MESSAGES_PER_TASK  = var.messages_per_task
    QP_MAX_TASKS          = var.max_tasks
    QP_MAX_LAUNCH_PER_RUN = var.max_launch_per_run
    QP_CAPACITY           = var.capacity
    QP_SPOT_FALLBACK      = var.spot_fallback
    QP_COUNT_IN_FLIGHT    = var.count_in_flight
    QP_ENABLED            = var.scaler_enabled
    QP_LOG_FORMAT         = var.log_format
  }
}

resource "aws_lambda_function" "scaler" {
  #checkov:skip=CKV_AWS_117:The scaler only calls SQS and ECS APIs; outside a VPC it needs no NAT gateway or endpoints and starts faster.
  #checkov:skip=CKV_AWS_116:Invoked asynchronously by the schedule with retries 0: a failed tick is superseded by the next one, a DLQ would only collect stale ticks.
  #checkov:skip=CKV_AWS_173:The environment holds resource names and settings, no secrets; Lambda encrypts it at rest with its own key.
  #checkov:skip=CKV_AWS_272:The code comes from this project's own pipeline (CodeBuild, immutable artifacts); code signing needs a Signer profile per deployment.
  function_name = "${var.name}-scale"
  description   = "qp scale: starts Fargate workers for the upload queue's backlog"
  role          = aws_iam_role.scaler.arn

  runtime       = var.lambda_runtime
  handler       = "bootstrap" # unused by custom runtimes; /var/task/bootstrap is executed
  architectures = ["x86_64"]
  memory_size   = 128
  timeout       = 30

  filename         = var.lambda_zip
  source_code_hash = filebase64sha256(var.lambda_zip)

  reserved_concurrent_executions = var.lambda_reserved_concurrency

  environment {
    variables = { for k, v in local.scaler_env : k => tostring(v) if v != null }
  }

  tracing_config {
    mode = "PassThrough"
  }

  logging_config {
    log_format = "Text" # qp writes its own JSON lines (QP_LOG_FORMAT)
    log_group  = aws_cloudwatch_log_group.scaler.name
  }

  # The pipeline updates the code on every commit; terraform only creates it.
  lifecycle {
    ignore_changes = [filename, source_code_hash]
  }
}

resource "aws_lambda_function_event_invoke_config" "scaler" {
  function_name                = aws_lambda_function.scaler.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

resource "aws_cloudwatch_event_rule" "scale" {
  name                = "${var.name}-scale"
  description         = "Runs qp scale on a schedule"
  schedule_expression = var.schedule_expression
}

resource "aws_cloudwatch_event_target" "scale" {
  rule = aws_cloudwatch_event_rule.scale.name
  arn  = aws_lambda_function.scaler.arn
}

resource "aws_lambda_permission" "schedule" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.scaler.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.scale.arn
}
