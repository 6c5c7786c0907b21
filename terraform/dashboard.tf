# What the operator watches: the dashboard and the queue alarms. The dashboard draws queue and
# DLQ depth (AWS/SQS) and qp's own EMF metrics (namespace qp): images, bytes and latency from the
# workers, the scaler's decisions and the tasks per capacity provider from each tick, and the
# last failures from the workers' log. tests/dashboard.rs checks every metric it names against
# the names qp emits (src/metrics.rs).

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = templatefile("${path.module}/dashboard.json.tftpl", {
    region           = var.region
    queue            = aws_sqs_queue.uploads.name
    dlq              = aws_sqs_queue.dlq.name
    worker_log_group = aws_cloudwatch_log_group.worker.name
  })
}

# Alarms on both queues, to the notification topic (queue.tf). The DLQ one says what failed;
# the stalled one that nothing moves: the oldest upload has waited longer than
# stalled_after_secs (scaler off or failing, tasks not starting, workers crashing before they
# delete anything).
locals {
  queue_alarms = {
    dlq-not-empty = {
      description = "Uploads qp could not process after ${var.max_receive_count} receives are waiting in ${aws_sqs_queue.dlq.name}. Look at them (qp status, dashboard ${var.name}), fix, then qp redrive to ${aws_sqs_queue.uploads.name}."
      queue       = aws_sqs_queue.dlq.name
      metric      = "ApproximateNumberOfMessagesVisible"
      threshold   = 0
    }
    queue-stalled = {
      description = "The oldest upload in ${aws_sqs_queue.uploads.name} has waited over ${var.stalled_after_secs} s. Run qp status, then look at the scaler's and the workers' logs (dashboard ${var.name})."
      queue       = aws_sqs_queue.uploads.name
      metric      = "ApproximateAgeOfOldestMessage"
      threshold   = var.stalled_after_secs
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "queue" {
  for_each = local.queue_alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/SQS"
  metric_name         = each.value.metric
  dimensions          = { QueueName = each.value.queue }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.notifications.arn]
  ok_actions          = [aws_sns_topic.notifications.arn]
}

# The DLQ alarm was a resource of its own in queue.tf: keep it rather than replace it.
moved {
  from = aws_cloudwatch_metric_alarm.dlq_depth
  to   = aws_cloudwatch_metric_alarm.queue["dlq-not-empty"]
}
