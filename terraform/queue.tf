# Uploads -> S3 notification -> SQS queue (-> DLQ after max_receive_count receives), plus the
# notification topic its alarms (dashboard.tf) publish to.

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-uploads-dlq"
  message_retention_seconds = 1209600 # 14 days, the maximum: time to look at what failed
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "uploads" {
  name                       = "${var.name}-uploads"
  visibility_timeout_seconds = var.queue_visibility_timeout_secs
  receive_wait_time_seconds  = 20 # long polling: an idle worker makes 3 requests a minute
  message_retention_seconds  = 1209600
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.uploads.arn]
  })
}

data "aws_iam_policy_document" "uploads_queue" {
  statement {
    sid       = "SourceBucketNotifications"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.uploads.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this["source"].arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.uploads.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "uploads" {
  queue_url = aws_sqs_queue.uploads.id
  policy    = data.aws_iam_policy_document.uploads_queue.json
}

# s3:ObjectCreated:* covers Put, Post, Copy and CompleteMultipartUpload: `aws s3 cp` of a file
# over 8 MB is a multipart upload and must be processed too.
resource "aws_s3_bucket_notification" "source" {
  bucket = aws_s3_bucket.this["source"].id

  dynamic "queue" {
    for_each = toset(var.source_suffixes)
    content {
      id            = "qp-${trimprefix(queue.value, ".")}"
      queue_arn     = aws_sqs_queue.uploads.arn
      events        = ["s3:ObjectCreated:*"]
      filter_prefix = var.source_prefix == "" ? null : var.source_prefix
      filter_suffix = queue.value == "" ? null : queue.value
    }
  }

  # S3 sends a test event when the notification is created: the queue policy must exist first.
  depends_on = [aws_sqs_queue_policy.uploads]
}

# ---------------------------------------------------------------------------------------------
# Notifications: the queue alarms (dashboard.tf) and the pipeline's failures go to one topic.
# ---------------------------------------------------------------------------------------------

resource "aws_sns_topic" "notifications" {
  #checkov:skip=CKV_AWS_26:CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS key, and a customer-managed key costs while idle; the messages carry alarm and pipeline states, no data.
  name = "${var.name}-notifications"
}

data "aws_iam_policy_document" "notifications" {
  statement {
    sid       = "CloudWatchAlarms"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.notifications.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }

  statement {
    sid       = "PipelineNotifications"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.notifications.arn]
    principals {
      type        = "Service"
      identifiers = ["codestar-notifications.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.notifications.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sns_topic_policy" "notifications" {
  arn    = aws_sns_topic.notifications.arn
  policy = data.aws_iam_policy_document.notifications.json
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.notifications.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}
