# Shared look-ups and names. Resource files: kms.tf, s3.tf, glue_catalog.tf,
# glue_jobs.tf, iam.tf, logs.tf, athena.tf.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  bucket_name     = coalesce(var.bucket_name, "${var.project_name}-lake-${local.account_id}-${local.region}")
  log_bucket_name = coalesce(var.log_bucket_name, "${local.bucket_name}-access-logs")

  # ARNs built from names, not from the resources, so the KMS key policy and
  # the IAM policies can name the buckets without a dependency cycle
  # (bucket -> key -> key policy -> bucket).
  bucket_arn     = "arn:${local.partition}:s3:::${local.bucket_name}"
  log_bucket_arn = "arn:${local.partition}:s3:::${local.log_bucket_name}"

  # Lake zones (docs/design.md "Lake layout"). Each IAM role gets only the zones
  # its stage reads or writes.
  prefix_raw            = "raw/"
  prefix_raw_unzipped   = "raw_unzipped/"
  prefix_processed      = "processed/"
  prefix_rejected       = "rejected/"
  prefix_analytics      = "analytics/"
  prefix_temp           = "temp/"
  prefix_pipes          = "pipes/"
  prefix_athena_results = "athena-results/"
  prefix_artifacts      = "artifacts/"

  # Catalog names the code uses (market_etl/core/tables.py DATABASE; the
  # tables in it are Iceberg tables the pipeline creates, glue_catalog.tf).
  # IAM statements name each table as "${local.glue_table_arn_prefix}<name>"
  # and its directory under the zone prefix; the tests compare both with the
  # code's declaration (TABLES: name, location_key).
  glue_database_name = "market_data"

  glue_catalog_arn      = "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog"
  glue_database_arn     = "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${local.glue_database_name}"
  glue_table_arn_prefix = "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${local.glue_database_name}/"

  # CloudWatch log group of the Glue jobs (logs.tf).
  glue_log_group_name = "/aws-glue/jobs/${var.project_name}"
}
