# Outputs: what the Dagster AWS settings and operators need. Every output is
# described (market_etl_tests/unit/test_terraform.py checks it).

output "bucket_name" {
  description = "Data-lake bucket (the aws runtime's lake root is s3://<bucket_name>/)."
  value       = aws_s3_bucket.lake.id
}

output "bucket_arn" {
  description = "ARN of the data-lake bucket."
  value       = aws_s3_bucket.lake.arn
}

output "log_bucket_name" {
  description = "Bucket receiving the data-lake bucket's S3 server access logs (prefix s3-access/)."
  value       = aws_s3_bucket.logs.id
}

output "kms_key_arn" {
  description = "ARN of the customer managed KMS key encrypting the buckets, Glue logs and bookmarks, and Athena results."
  value       = aws_kms_key.lake.arn
}

output "kms_key_alias" {
  description = "Alias of the project KMS key."
  value       = aws_kms_alias.lake.name
}

output "glue_database_name" {
  description = "Glue Data Catalog database of the lake's Iceberg tables."
  value       = aws_glue_catalog_database.market_data.name
}

output "glue_table_names" {
  description = "Iceberg tables the pipeline creates in that database on first use (market_etl/core/tables.py); Terraform grants their commit path, it does not declare them."
  value       = ["trades_binance", "trades_rejected", "ohlcv_1m", "daily_trade_stats"]
}

output "glue_job_names" {
  description = "Glue job name per stage (download, unzip, etl): the JobName PipesGlueClient starts."
  value = {
    download = aws_glue_job.download.name
    unzip    = aws_glue_job.unzip.name
    etl      = aws_glue_job.etl.name
  }
}

output "glue_role_arns" {
  description = "IAM role ARN per Glue job kind (download, unzip, etl)."
  value = {
    download = aws_iam_role.download.arn
    unzip    = aws_iam_role.unzip.arn
    etl      = aws_iam_role.etl.arn
  }
}

output "glue_security_configuration_name" {
  description = "Glue security configuration attached to every job (SSE-KMS S3, KMS-encrypted logs, CSE-KMS bookmarks)."
  value       = aws_glue_security_configuration.this.name
}

output "glue_log_group_name" {
  description = "CloudWatch log group of the Glue jobs (Glue 5.0 output/error groups are <name>/output and <name>/error)."
  value       = aws_cloudwatch_log_group.glue["continuous"].name
}

output "athena_workgroup_name" {
  description = "Athena workgroup to run the project's queries in (enforced configuration, encrypted results, scan cutoff)."
  value       = aws_athena_workgroup.market_etl.name
}

output "athena_results_location" {
  description = "S3 location where the workgroup writes query results."
  value       = "s3://${aws_s3_bucket.lake.id}/${local.prefix_athena_results}"
}

output "orchestrator_policy_arn" {
  description = "IAM policy for the identity running Dagster: start/poll/stop the three jobs, Pipes objects under pipes/, Athena in the workgroup, partition registration. Attach it yourself."
  value       = aws_iam_policy.orchestrator.arn
}

output "alerts_topic_arn" {
  description = "SNS topic of the alerts (Glue job failures through EventBridge, failed Dagster runs): Dagster's MARKET_ETL_ALERTS_TOPIC_ARN."
  value       = aws_sns_topic.alerts.arn
}

# `terraform output -raw dagster_environment > market-etl.env`: the settings
# of the Dagster processes (webserver, daemon) for this stack, in the
# KEY=value form of an env file (systemd EnvironmentFile, docker --env-file).
output "dagster_environment" {
  description = "Environment of the Dagster processes for this stack (KEY=value lines): runtime, lake bucket, region, Glue job prefix and concurrency, Athena workgroup, alerts topic."
  value       = <<-EOT
    MARKET_ETL_RUNTIME=aws
    MARKET_ETL_LAKE=s3://${aws_s3_bucket.lake.id}/
    AWS_REGION=${local.region}
    MARKET_ETL_PIPES_BUCKET=${aws_s3_bucket.lake.id}
    MARKET_ETL_GLUE_JOB_PREFIX=${trimsuffix(aws_glue_job.download.name, "download")}
    MARKET_ETL_GLUE_MAX_CONCURRENT_RUNS=${var.glue_max_concurrent_runs}
    MARKET_ETL_ATHENA_WORKGROUP=${aws_athena_workgroup.market_etl.name}
    MARKET_ETL_ALERTS_TOPIC_ARN=${aws_sns_topic.alerts.arn}
  EOT
}
