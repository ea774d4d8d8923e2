# Glue Data Catalog: the database only. The tables are Apache Iceberg tables
# that the pipeline creates on first use, from the one declaration in
# market_etl/core/tables.py (market_etl/lake/iceberg.py, pyiceberg's
# GlueCatalog): trades_binance, trades_rejected, ohlcv_1m, daily_trade_stats.
#
# Why not declare them here as well (aws_glue_catalog_table with
# open_table_format_input { iceberg_input { metadata_operation = "CREATE" } })?
# - It would be a second declaration of every column, to keep in step with
#   the code's by hand.
# - It cannot say what makes the tables what the code needs: the provider's
#   iceberg_input has no partition spec (the tables are partitioned by
#   year/month/day/symbol, year/month/symbol, symbol/month), no Iceberg types
#   (trade_time is timestamptz) and no table properties (format-version 2,
#   snappy, manifest sizing).
# - A table that already exists is loaded as it is: the code would then write
#   into Terraform's unpartitioned table and never apply its own declaration.
# So Terraform owns the database and grants the orchestrator exactly the Glue
# calls and S3 prefixes the commit path needs (iam.tf, scoped to these four
# tables by name: local.iceberg_tables in main.tf, which the tests compare
# with the code's declaration). Athena (engine version 3, athena.tf) reads the
# tables natively through their Iceberg metadata.
#
# Destroying the stack deletes the database and, with it, the tables Glue
# holds in it; their files stay in the (versioned) bucket.

resource "aws_glue_catalog_database" "market_data" {
  name        = local.glue_database_name
  description = "${var.project_name}: Binance market data as Apache Iceberg tables (created by the pipeline from market_etl/core/tables.py) under s3://${local.bucket_name}/."
}
