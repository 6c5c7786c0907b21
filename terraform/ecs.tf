# The worker: an ECS cluster with Fargate and Fargate Spot, and the task definition of `qp work`.
# No ECS service: the scaler starts standalone tasks, which exit when the queue stays empty.

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE_SPOT"
    weight            = 1
  }
}

resource "aws_cloudwatch_log_group" "worker" {
  #checkov:skip=CKV_AWS_158:Encrypted by CloudWatch Logs' own key; a customer-managed key costs while idle. The logs hold object keys and errors, no image data.
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days (30 by default): per-image logs lose their value quickly and cost per GB-month.
  name              = "/ecs/${var.name}-worker"
  retention_in_days = var.log_retention_days
}

locals {
  image = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"

  # The environment of `qp work` (one place: a test in tests/packaging.rs checks it holds every
  # variable in qp::config::work::REQUIRED_ENV and nothing qp does not know). null = qp's default.
  worker_env = {
    QP_QUEUE_URL           = aws_sqs_queue.uploads.url
    QP_DEST_BUCKET         = aws_s3_bucket.this["destination"].id
    QP_DEST_PREFIX         = var.dest_prefix
    QP_SIZES               = join(",", var.sizes)
    QP_MODE                = var.mode
    QP_QUALITY             = var.quality
    QP_MAX_PIXELS          = var.max_pixels
    QP_CONCURRENCY         = var.concurrency
    QP_IDLE_TIMEOUT_SECS   = var.idle_timeout_secs
    QP_DLQ_URL             = aws_sqs_queue.dlq.url
    QP_SHUTDOWN_GRACE_SECS = var.shutdown_grace_secs
    QP_LOG_FORMAT          = var.log_format
  }
}

resource "aws_ecs_task_definition" "worker" {
  family                   = "${var.name}-worker"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name      = var.container_name
    image     = local.image
    essential = true
    # SIGTERM, then SIGKILL after 120 s (the maximum, and the Fargate Spot notice): qp finishes
    # in-flight images within QP_SHUTDOWN_GRACE_SECS.
    stopTimeout = 120
    # qp work writes no file: objects and outputs stay in memory, logs go to stderr.
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    environment            = [for k, v in local.worker_env : { name = k, value = tostring(v) } if v != null]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "worker"
      }
    }
  }])

  # Revisions registered by the pipeline (one per commit) derive from the latest one; keep this
  # revision when terraform replaces it so tasks started from it are not orphaned.
  skip_destroy = true
}
