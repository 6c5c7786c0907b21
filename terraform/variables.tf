# ---------------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (buckets, queue, cluster, function, pipeline)."
  type        = string
  default     = "qp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2-21 characters, lowercase letters, digits and '-', starting with a letter (it becomes part of bucket names)."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags applied to every resource (Project = name is always set)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Buckets and queue
# ---------------------------------------------------------------------------------------------

variable "source_bucket_name" {
  description = "Name of the bucket images are uploaded to (created). Default: <name>-source-<account>-<region>."
  type        = string
  default     = null
}

variable "destination_bucket_name" {
  description = "Name of the bucket the resized JPEGs are written to (created). Default: <name>-processed-<account>-<region>."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete buckets that still hold objects. Off: uploads and outputs are not thrown away by accident."
  type        = bool
  default     = false
}

variable "source_prefix" {
  description = "Only uploads whose key starts with this prefix are processed (\"\" = the whole bucket)."
  type        = string
  default     = ""
}

variable "source_suffixes" {
  description = "Only uploads whose key ends with one of these are processed (one S3 notification rule each; S3 filters are case-sensitive)."
  type        = list(string)
  default = [
    ".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG", ".webp", ".WEBP",
    ".gif", ".GIF", ".bmp", ".BMP", ".tif", ".TIF", ".tiff", ".TIFF",
  ]

  validation {
    condition     = length(var.source_suffixes) > 0
    error_message = "source_suffixes: give at least one suffix (use [\"\"] for every key)."
  }
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept in the versioned buckets before it expires."
  type        = number
  default     = 7
}

variable "queue_visibility_timeout_secs" {
  description = "SQS visibility timeout: how long a received message stays hidden. Above the worst case of one image (download, 100 MP decode, resize, uploads) plus the shutdown grace; the worker extends it for slow images."
  type        = number
  default     = 300

  validation {
    condition     = var.queue_visibility_timeout_secs > var.shutdown_grace_secs && var.queue_visibility_timeout_secs <= 43200
    error_message = "queue_visibility_timeout_secs must exceed shutdown_grace_secs and be at most 43200 (12 h)."
  }
}

variable "max_receive_count" {
  description = "Receives after which a message moves to the dead-letter queue."
  type        = number
  default     = 3
}

variable "alarm_email" {
  description = "E-mail address subscribed to the notification topic (DLQ alarm, pipeline failures). null: subscribe yourself later."
  type        = string
  default     = null
}

variable "stalled_after_secs" {
  description = "The queue-stalled alarm fires when the oldest upload has waited longer than this (seconds)."
  type        = number
  default     = 3600

  validation {
    condition     = var.stalled_after_secs >= 300
    error_message = "stalled_after_secs: at least 300 (the scaler ticks every few minutes, and SQS publishes the age every minute)."
  }
}

# ---------------------------------------------------------------------------------------------
# The worker (`qp work`): its QP_* settings and task size
# ---------------------------------------------------------------------------------------------

variable "dest_prefix" {
  description = "QP_DEST_PREFIX: key prefix of the outputs (<prefix>/<W>x<H>/<source key> with several sizes)."
  type        = string
  default     = "processed"
}

variable "sizes" {
  description = "QP_SIZES: output sizes WxH, all made from one decode."
  type        = list(string)
  default     = ["224x224"]
}

variable "mode" {
  description = "QP_MODE: fill (cover, centre-crop), fit (inside, never enlarged) or pad (letterbox)."
  type        = string
  default     = "fill"

  validation {
    condition     = contains(["fill", "fit", "pad"], var.mode)
    error_message = "mode must be fill, fit or pad."
  }
}

variable "quality" {
  description = "QP_QUALITY: JPEG quality of the outputs, 1-100."
  type        = number
  default     = 90
}

variable "max_pixels" {
  description = "QP_MAX_PIXELS: images with more pixels are refused from the header (about 6 bytes per pixel are needed to decode)."
  type        = number
  default     = 100000000
}

variable "concurrency" {
  description = "QP_CONCURRENCY: images downloaded/uploaded at once per task. null: qp's default (8 per vCPU)."
  type        = number
  default     = null
}

variable "idle_timeout_secs" {
  description = "QP_IDLE_TIMEOUT_SECS: a task exits after the queue has been empty this long (scale to zero)."
  type        = number
  default     = 60
}

variable "shutdown_grace_secs" {
  description = "QP_SHUTDOWN_GRACE_SECS: time in-flight images get to finish after SIGTERM. Below the task's stopTimeout (120 s, the Fargate Spot notice)."
  type        = number
  default     = 90

  validation {
    condition     = var.shutdown_grace_secs > 0 && var.shutdown_grace_secs < 120
    error_message = "shutdown_grace_secs must be between 1 and 119: ECS kills the container 120 s after SIGTERM."
  }
}

variable "log_format" {
  description = "QP_LOG_FORMAT of the worker and the scaler: json (CloudWatch Logs Insights), text or auto."
  type        = string
  default     = "json"
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Fargate task memory in MiB. 2048 fits two 100 MP images in flight."
  type        = number
  default     = 2048
}

variable "container_name" {
  description = "Name of the worker container in the task definition (QP_CONTAINER_NAME of the scaler)."
  type        = string
  default     = "worker"
}

variable "image_tag" {
  description = "Image tag of the task definition terraform registers. The pipeline registers a new revision per commit (tag = commit); after the first pipeline run, set this to the deployed commit before changing task settings here, or the next apply registers a revision with this tag."
  type        = string
  default     = "initial"
}

variable "log_retention_days" {
  description = "Retention of the worker, scaler and build log groups."
  type        = number
  default     = 30
}

# ---------------------------------------------------------------------------------------------
# The scaler (`qp scale`, the Lambda)
# ---------------------------------------------------------------------------------------------

variable "schedule_expression" {
  description = "EventBridge schedule of the scaler."
  type        = string
  default     = "rate(2 minutes)"
}

variable "lambda_runtime" {
  description = "Lambda custom runtime. provided.al2 (the original design's) is deprecated by AWS from 2026-07-31 and cannot create functions from 2027-02-01: use provided.al2023."
  type        = string
  default     = "provided.al2023"

  validation {
    condition     = contains(["provided.al2023", "provided.al2"], var.lambda_runtime)
    error_message = "lambda_runtime must be provided.al2023 (recommended) or provided.al2 (deprecated)."
  }
}

variable "lambda_zip" {
  description = "Path of the Lambda package (scripts/package-lambda writes dist/qp-lambda.zip). Used when the function is created; the pipeline updates the code afterwards."
  type        = string
  default     = "../dist/qp-lambda.zip"
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of the scaler: 1 means two ticks never run at once (no double launches). -1 leaves it unreserved (needed on accounts whose concurrency quota is 10)."
  type        = number
  default     = 1
}

variable "scaler_enabled" {
  description = "QP_ENABLED: false makes the scaler report the plan without launching tasks."
  type        = bool
  default     = true
}

variable "capacity" {
  description = "QP_CAPACITY: capacity provider strategy PROVIDER:WEIGHT[:base=N],... e.g. FARGATE:1:base=1,FARGATE_SPOT:4."
  type        = string
  default     = "FARGATE_SPOT:1"
}

variable "spot_fallback" {
  description = "QP_SPOT_FALLBACK: relaunch on FARGATE when Fargate Spot has no capacity."
  type        = bool
  default     = true
}

variable "messages_per_task" {
  description = "QP_MESSAGES_PER_TASK: backlog one task is expected to handle per scaling period."
  type        = number
  default     = 10
}

variable "max_tasks" {
  description = "QP_MAX_TASKS: upper bound on worker tasks running at once."
  type        = number
  default     = 10
}

variable "max_launch_per_run" {
  description = "QP_MAX_LAUNCH_PER_RUN: upper bound on tasks launched by one tick. null: only max_tasks bounds it."
  type        = number
  default     = null
}

variable "count_in_flight" {
  description = "QP_COUNT_IN_FLIGHT: count received-but-not-deleted messages as backlog."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "subnet_ids" {
  description = "Existing subnets for the worker tasks (≥ 2 AZs recommended). Empty: a VPC with private subnets is created."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Existing security groups for the worker tasks; required with subnet_ids. They need outbound HTTPS to S3, SQS, ECR and CloudWatch Logs."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.subnet_ids) == 0 || length(var.security_group_ids) > 0
    error_message = "security_group_ids is required when subnet_ids is given."
  }
}

variable "assign_public_ip" {
  description = "QP_ASSIGN_PUBLIC_IP: give tasks a public IP. Needed for existing public subnets without a NAT gateway; leave false for the created private subnets."
  type        = bool
  default     = false
}

variable "vpc_cidr" {
  description = "CIDR of the created VPC (when subnet_ids is empty)."
  type        = string
  default     = "10.42.0.0/16"
}

variable "az_count" {
  description = "Availability zones the created VPC spans (one private subnet each)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2
    error_message = "az_count must be at least 2."
  }
}

variable "nat_gateway" {
  description = "Create one NAT gateway (in a small public subnet) so tasks in the created private subnets reach ECR, SQS and CloudWatch Logs. About 33 USD/month plus data; S3 traffic goes through the free gateway endpoint."
  type        = bool
  default     = true
}

variable "interface_endpoints" {
  description = "Create interface endpoints (ecr.api, ecr.dkr, logs, sqs) in the created VPC, so no traffic leaves AWS's network; with nat_gateway = false they are the tasks' only way out. About 7.3 USD/month per endpoint per AZ."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Delivery: ECR, CodeBuild, CodePipeline
# ---------------------------------------------------------------------------------------------

variable "repository_id" {
  description = "Source repository of the pipeline, owner/name (e.g. my-org/qp)."
  type        = string
}

variable "branch" {
  description = "Branch the pipeline builds and deploys."
  type        = string
  default     = "main"
}

variable "connection_provider" {
  description = "Provider of the CodeStar (CodeConnections) connection: GitHub, GitHubEnterpriseServer, Bitbucket or GitLab."
  type        = string
  default     = "GitHub"
}

variable "build_compute_type" {
  description = "CodeBuild compute type. The release build with LTO is CPU-bound: LARGE (8 vCPU) roughly halves MEDIUM's time."
  type        = string
  default     = "BUILD_GENERAL1_MEDIUM"
}

variable "build_image" {
  description = "CodeBuild image (Ubuntu-based: buildspec.yml installs musl-tools with apt)."
  type        = string
  default     = "aws/codebuild/standard:7.0"
}

variable "images_to_keep" {
  description = "ECR lifecycle: tagged images kept (older ones expire; untagged ones after a day)."
  type        = number
  default     = 30
}
