# CloudWatch log groups of the Glue jobs, created here (not by Glue on first
# run) so they have a retention and are encrypted with the project key.
#
#   /aws-glue/jobs/market-etl          continuous log group of every job
#                                      (--continuous-log-logGroup)
#   /aws-glue/jobs/market-etl/output   Glue 5.0 stdout/stderr and
#   /aws-glue/jobs/market-etl/error    system/Spark logs (--custom-logGroup-prefix)
#
# Glue's documentation says that with a security configuration that encrypts
# CloudWatch logs, Glue derives some log group names itself (e.g. it appends
# "-<security configuration name>" to a custom continuous log group, and the
# Python shell jobs write under /aws-glue/python-jobs/). Glue creates those
# itself with the job role (iam.tf grants logs:CreateLogGroup and
# logs:AssociateKmsKey on /aws-glue/jobs/* and /aws-glue/python-jobs/* for
# that); after the first real run, import any such group here to give it a
# retention too.
#
# Pipes messages (check results) do not depend on these logs: they travel
# through S3 (pipes/), because Glue's CloudWatch stream drops lines.

locals {
  glue_log_groups = {
    continuous = local.glue_log_group_name
    output     = "${local.glue_log_group_name}/output"
    error      = "${local.glue_log_group_name}/error"
  }
}

resource "aws_cloudwatch_log_group" "glue" {
  for_each = local.glue_log_groups

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.lake.arn
}
