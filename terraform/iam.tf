# Least privilege, one role per principal:
#   execution role: pull the image, write the worker's logs (used by the ECS agent);
#   task role:      what `qp work` does (queue, DLQ, source objects, destination objects);
#   scaler role:    what `qp scale` does (queue depth, list and run the worker's tasks);
#   build, pipeline roles: in cicd.tf.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# --- execution role ---------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${var.name}-worker-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"] # account-wide by design: no resource to scope to
    resources = ["*"]
  }
  statement {
    sid = "PullWorkerImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.this.arn]
  }
  statement {
    sid       = "WorkerLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.worker.arn}:*"]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- task role (qp work) ----------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name               = "${var.name}-worker-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid = "DrainQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [aws_sqs_queue.uploads.arn]
  }
  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
  statement {
    sid       = "ReadSources"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this["source"].arn}/*"]
  }
  statement {
    sid       = "WriteOutputs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this["destination"].arn}/*"]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "qp-work"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# --- scaler role (qp scale, the Lambda) -------------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "scaler" {
  name               = "${var.name}-scaler"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

locals {
  # Every revision of the worker's family, including those the pipeline registers.
  task_definition_family_arn = "arn:${local.partition}:ecs:${var.region}:${local.account}:task-definition/${aws_ecs_task_definition.worker.family}:*"
}

data "aws_iam_policy_document" "scaler" {
  statement {
    sid       = "QueueDepth"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.uploads.arn]
  }
  statement {
    sid       = "RunWorkers"
    actions   = ["ecs:RunTask"]
    resources = [local.task_definition_family_arn]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    # RunTask with tags also authorises ecs:TagResource on the tasks it creates.
    sid       = "TagWorkersAtLaunch"
    actions   = ["ecs:TagResource"]
    resources = ["arn:${local.partition}:ecs:${var.region}:${local.account}:task/${aws_ecs_cluster.this.name}/*"]
    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }
  statement {
    # ListTasks is authorised on container instances, so the resource is "*" and the cluster
    # condition does the scoping.
    sid       = "CountWorkers"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    # The scaler reads its own tasks' qp:event-id tags so a repeated delivery of one scheduled
    # event launches nothing; scoped to this cluster's tasks.
    sid       = "ReadWorkerTasks"
    actions   = ["ecs:DescribeTasks"]
    resources = ["arn:${local.partition}:ecs:${var.region}:${local.account}:task/${aws_ecs_cluster.this.name}/*"]
  }
  statement {
    sid       = "PassWorkerRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  statement {
    sid       = "ScalerLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.scaler.arn}:*"]
  }
}

resource "aws_iam_role_policy" "scaler" {
  name   = "qp-scale"
  role   = aws_iam_role.scaler.id
  policy = data.aws_iam_policy_document.scaler.json
}
