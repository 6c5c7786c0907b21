# The buckets: source (uploads), destination (outputs), pipeline artifacts, and the access-log
# target of the other three. Same hardening for all: SSE, public access blocked, TLS-only policy,
# versioning with a noncurrent-version expiry, aborted multipart uploads cleaned up.

locals {
  buckets = {
    source      = coalesce(var.source_bucket_name, "${var.name}-source-${local.bucket_suffix}")
    destination = coalesce(var.destination_bucket_name, "${var.name}-processed-${local.bucket_suffix}")
    artifacts   = "${var.name}-artifacts-${local.bucket_suffix}"
    logs        = "${var.name}-access-logs-${local.bucket_suffix}"
  }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost; outputs can be regenerated from the sources.
  #checkov:skip=CKV_AWS_145:SSE-S3 on purpose: any principal allowed s3:PutObject can upload without a KMS grant, and there is no key cost while idle.
  #checkov:skip=CKV2_AWS_62:Only the source bucket needs event notifications (s3_notification in queue.tf); the others are sinks.
  for_each = local.buckets

  bucket = each.value
  # Uploads and outputs are never deleted by `terraform destroy` unless asked; artifacts and logs
  # are disposable.
  force_destroy = contains(["artifacts", "logs"], each.key) ? true : var.force_destroy
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = aws_s3_bucket.this

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    id     = "expire-noncurrent-and-abort-multipart"
    status = "Enabled"
    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }

  dynamic "rule" {
    for_each = contains(["artifacts", "logs"], each.key) ? [1] : []
    content {
      id     = "expire-current"
      status = "Enabled"
      filter {}
      expiration {
        days = 90
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  for_each = { for k, b in aws_s3_bucket.this : k => b if k != "logs" }

  bucket        = each.value.id
  target_bucket = aws_s3_bucket.this["logs"].id
  target_prefix = "${each.key}/"
}

data "aws_iam_policy_document" "bucket" {
  for_each = aws_s3_bucket.this

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]
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

  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []
    content {
      sid       = "AllowServerAccessLogs"
      effect    = "Allow"
      actions   = ["s3:PutObject"]
      resources = ["${each.value.arn}/*"]
      principals {
        type        = "Service"
        identifiers = ["logging.s3.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  policy = data.aws_iam_policy_document.bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
