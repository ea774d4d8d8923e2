# Athena workgroup for the project's queries (sql/, pyathena).
#
# enforce_workgroup_configuration: clients cannot override the result
# location, the encryption or the scan cutoff, so a query always writes
# encrypted results into athena-results/ and a runaway scan is cancelled.
#
# Engine version 3: it reads the lake's Apache Iceberg tables natively, through
# the metadata pyiceberg commits under each table's metadata/ directory
# (glue_catalog.tf); the orchestrator policy grants that read (iam.tf).

resource "aws_athena_workgroup" "market_etl" {
  name        = var.project_name
  description = "${var.project_name}: queries over the market_data catalog; encrypted results, per-query scan cutoff."
  state       = "ENABLED"

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location       = "s3://${aws_s3_bucket.lake.id}/${local.prefix_athena_results}"
      expected_bucket_owner = local.account_id

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.lake.arn
      }
    }
  }
}
