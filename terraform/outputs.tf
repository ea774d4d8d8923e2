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
  description = "Glue Data Catalog database holding the trades table."
  value       = aws_glue_catalog_database.market_data.name
}

output "glue_table_name" {
  description = "Glue Data Catalog table of processed trades (partitions registered by the pipeline after its checks pass)."
  value       = aws_glue_catalog_table.trades_binance.name
}

output "glue_analytics_table_names" {
  description = "Glue Data Catalog tables of the analytics assets (Athena UNLOAD output; one partition per symbol-month, moved to each new run)."
  value       = [aws_glue_catalog_table.ohlcv_1m.name, aws_glue_catalog_table.daily_trade_stats.name]
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
