# Inputs of the market-etl AWS stack. Every variable has a description and a
# type (market_etl_tests/unit/test_terraform.py checks it); defaults are the values
# the project runs with, so `terraform plan` needs no tfvars for a first try.

# --- identity and placement -------------------------------------------------

variable "region" {
  description = "AWS region for every resource of the stack (bucket, Glue, Athena, KMS, logs)."
  type        = string
  default     = "eu-west-1"
}

variable "project_name" {
  description = "Project name: prefix of resource names and the Project tag. Lowercase letters, digits and hyphens."
  type        = string
  default     = "market-etl"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.project_name))
    error_message = "project_name must be 3-31 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags merged into the provider's default_tags (e.g. Owner, CostCenter)."
  type        = map(string)
  default     = {}
}

# --- buckets ----------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the data-lake bucket. Null derives a globally unique one: <project>-lake-<account id>-<region>."
  type        = string
  default     = null
}

variable "log_bucket_name" {
  description = "Name of the bucket that receives the data-lake bucket's server access logs. Null derives <lake bucket>-access-logs."
  type        = string
  default     = null
}

variable "glacier_transition_days" {
  description = "Days after which objects under raw/ (the verified Binance zips) move to S3 Glacier Flexible Retrieval."
  type        = number
  default     = 90

  validation {
    condition     = var.glacier_transition_days >= 1
    error_message = "glacier_transition_days must be at least 1."
  }
}

variable "raw_unzipped_expiry_days" {
  description = "Days after which objects under raw_unzipped/ expire. The CSVs are a cache: unzip recreates them from raw/."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_unzipped_expiry_days >= 1
    error_message = "raw_unzipped_expiry_days must be at least 1."
  }
}

variable "temp_expiry_days" {
  description = "Days after which objects under temp/ (Spark/Glue scratch space, staged writes) expire."
  type        = number
  default     = 7

  validation {
    condition     = var.temp_expiry_days >= 1
    error_message = "temp_expiry_days must be at least 1."
  }
}

variable "pipes_expiry_days" {
  description = "Days after which Dagster Pipes context and message objects under pipes/ expire (they matter only while a run is live)."
  type        = number
  default     = 7

  validation {
    condition     = var.pipes_expiry_days >= 1
    error_message = "pipes_expiry_days must be at least 1."
  }
}

variable "athena_results_expiry_days" {
  description = "Days after which Athena query results under athena-results/ expire."
  type        = number
  default     = 30

  validation {
    condition     = var.athena_results_expiry_days >= 1
    error_message = "athena_results_expiry_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which S3 aborts incomplete multipart uploads: the backstop behind the stages' own abort-on-failure."
  type        = number
  default     = 3

  validation {
    condition     = var.abort_incomplete_multipart_days >= 1
    error_message = "abort_incomplete_multipart_days must be at least 1."
  }
}

variable "noncurrent_version_expiry_days" {
  description = "Days a noncurrent (overwritten or deleted) object version is kept before it expires, in both buckets."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiry_days >= 1
    error_message = "noncurrent_version_expiry_days must be at least 1."
  }
}

variable "access_log_expiry_days" {
  description = "Days after which S3 server access log objects in the log bucket expire."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_expiry_days >= 1
    error_message = "access_log_expiry_days must be at least 1."
  }
}

# --- encryption and logs ----------------------------------------------------

variable "kms_deletion_window_days" {
  description = "Waiting period, in days, before the customer managed KMS key is deleted after a destroy (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "log_retention_days" {
  description = "Retention of the Glue job CloudWatch log groups, in days. Default one year (checkov CKV_AWS_338); Glue job logs are small."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts."
  }
}

# --- Athena -----------------------------------------------------------------

variable "athena_bytes_scanned_cutoff" {
  description = "Per-query data usage control of the Athena workgroup, in bytes: a query scanning more is cancelled. Default 10 GiB; minimum 10 MiB."
  type        = number
  default     = 10737418240

  validation {
    condition     = var.athena_bytes_scanned_cutoff >= 10485760
    error_message = "athena_bytes_scanned_cutoff must be at least 10485760 bytes (10 MiB), Athena's minimum."
  }
}

# --- Glue jobs --------------------------------------------------------------

variable "glue_etl_worker_type" {
  description = "Worker type of the Spark ETL job (market-etl-etl)."
  type        = string
  default     = "G.1X"

  validation {
    condition     = contains(["G.025X", "G.1X", "G.2X", "G.4X", "G.8X", "R.1X", "R.2X", "R.4X", "R.8X"], var.glue_etl_worker_type)
    error_message = "glue_etl_worker_type must be a Glue Spark worker type (G.1X, G.2X, ...)."
  }
}

variable "glue_etl_worker_count" {
  description = "Number of workers of the Spark ETL job (a driver plus executors; Glue's minimum is 2)."
  type        = number
  default     = 2

  validation {
    condition     = var.glue_etl_worker_count >= 2
    error_message = "glue_etl_worker_count must be at least 2."
  }
}

variable "python_shell_max_capacity" {
  description = "DPUs of the Python shell jobs (download, unzip): 0.0625 (1 GB memory) or 1 (16 GB). The stages stream with bounded memory, so 0.0625 suffices."
  type        = number
  default     = 0.0625

  validation {
    condition     = contains([0.0625, 1], var.python_shell_max_capacity)
    error_message = "python_shell_max_capacity must be 0.0625 or 1 (the only values Glue accepts for Python shell)."
  }
}

variable "glue_job_timeout_minutes" {
  description = "Timeout of each Glue job, in minutes; a run past it is stopped and reported failed to Dagster."
  type = object({
    download = number
    unzip    = number
    etl      = number
  })
  default = {
    download = 60
    unzip    = 60
    etl      = 120
  }
}

variable "glue_max_concurrent_runs" {
  description = "Concurrent runs allowed per Glue job. Dagster launches one run per symbol x month partition; Glue's default of 1 would fail a backfill's second run with ConcurrentRunsExceededException."
  type        = number
  default     = 4

  validation {
    condition     = var.glue_max_concurrent_runs >= 1
    error_message = "glue_max_concurrent_runs must be at least 1."
  }
}

variable "wheel_path" {
  description = "Path of the project's wheel (python -m build --wheel), absolute or relative to this terraform/ directory. Uploaded to artifacts/ and passed to the Glue jobs."
  type        = string
  default     = "../dist/market_etl-0.1.0-py3-none-any.whl"
}

variable "dagster_pipes_version_python_shell" {
  description = "dagster-pipes release installed in the Python shell jobs. Python shell runs 3.9 only; 1.10.21 is the last dagster-pipes for 3.9 and speaks the same Pipes protocol as 1.13."
  type        = string
  default     = "1.10.21"
}

variable "isal_version" {
  description = "python-isal release installed in the unzip job (ISA-L inflate); keep it equal to the pin in constraints.txt."
  type        = string
  default     = "1.9.1"
}

variable "dagster_pipes_version_glue_etl" {
  description = "dagster-pipes release installed in the Glue 5.0 (Python 3.11) ETL job; keep it equal to the main stack's pin."
  type        = string
  default     = "1.13.27"
}
