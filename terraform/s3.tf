# The data-lake bucket and the bucket that receives its access logs.
#
# Lake layout (docs/design.md): raw/ (verified Binance zips), raw_unzipped/ (CSV
# cache), processed/ (Parquet, Hive partitions), rejected/ (quarantined rows),
# temp/ (scratch), pipes/ (Dagster Pipes context and messages),
# athena-results/, artifacts/ (Glue scripts and the project wheel).

# =============================================================================
# Data-lake bucket
# =============================================================================

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is not worth its cost here: raw/ is re-downloadable from the public Binance archive (sha256-verified) and every other zone is derived from raw/.
  bucket = local.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    # ACLs off: access is decided by IAM and the bucket policy only.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    # A bad overwrite of raw/ or processed/ stays recoverable until the
    # noncurrent-version rule below expires it.
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    # S3 Bucket Keys cut KMS requests (and cost) for the many small Spark
    # part files and multipart uploads.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "lake" {
  bucket        = aws_s3_bucket.lake.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3-access/${local.bucket_name}/"
}

# EventBridge notifications: free until a rule consumes them; lets a later
# Dagster sensor or alert react to new objects without changing the bucket.
resource "aws_s3_bucket_notification" "lake" {
  bucket      = aws_s3_bucket.lake.id
  eventbridge = true
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  # Lifecycle rules act on versions; the bucket must be versioned first.
  depends_on = [aws_s3_bucket_versioning.lake]

  rule {
    id     = "raw-to-glacier"
    status = "Enabled"
    # Only the zips, not their small .meta.json sidecars (a few hundred
    # bytes): the download stage reads a sidecar (GetObject) to decide
    # "already present with the same sha256?", and GetObject fails on an
    # archived object. Explicit here rather than relying on S3's default
    # 128 KiB minimum transition size.
    filter {
      and {
        prefix                   = local.prefix_raw
        object_size_greater_than = 131072
      }
    }
    # The zips are kept (they are the source of truth once Binance changes
    # or drops a file) but rarely read again after the ETL has run; unzipping
    # an archived zip again needs a restore first.
    transition {
      days          = var.glacier_transition_days
      storage_class = "GLACIER"
    }
  }

  rule {
    id     = "raw-unzipped-expire"
    status = "Enabled"
    filter {
      prefix = local.prefix_raw_unzipped
    }
    # A cache: the unzip stage rebuilds it from raw/.
    expiration {
      days = var.raw_unzipped_expiry_days
    }
  }

  rule {
    id     = "temp-expire"
    status = "Enabled"
    filter {
      prefix = local.prefix_temp
    }
    expiration {
      days = var.temp_expiry_days
    }
  }

  rule {
    id     = "pipes-expire"
    status = "Enabled"
    filter {
      prefix = local.prefix_pipes
    }
    expiration {
      days = var.pipes_expiry_days
    }
  }

  rule {
    id     = "athena-results-expire"
    status = "Enabled"
    filter {
      prefix = local.prefix_athena_results
    }
    expiration {
      days = var.athena_results_expiry_days
    }
  }

  # Whole bucket: the backstop for multipart uploads that a killed stage could
  # not abort itself (docs/reliability.md cases 3, 12, 15), and the clean-up of
  # overwritten/deleted versions and of delete markers left with no versions.
  rule {
    id     = "abort-multipart-and-expire-noncurrent"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiry_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
}

data "aws_iam_policy_document" "lake_bucket" {
  # Deny a request on any action over plain HTTP. A Deny must name every
  # action to close the gap, hence s3:* (this grants nothing).
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      local.bucket_arn,
      "${local.bucket_arn}/*",
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
}

resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.lake_bucket.json

  # Applying a policy before the public access block can race with it.
  depends_on = [aws_s3_bucket_public_access_block.lake]
}

# =============================================================================
# Access-log bucket (target of the lake bucket's server access logs)
# =============================================================================

# It does not log its own access: that would log each log delivery (checkov
# recognises it as a log target bucket and does not ask for it either).
resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_144:Access logs are audit data kept for var.access_log_expiry_days in one region; a replica would double the cost for no recovery need.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events from the log bucket; notifications on log deliveries would be noise.
  bucket = local.log_bucket_name
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    # Server access logging accepts BucketOwnerEnforced when the bucket
    # policy (below) grants logging.s3.amazonaws.com.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    # The key policy lets logging.s3.amazonaws.com use the key for the lake
    # bucket's deliveries (kms.tf).
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket     = aws_s3_bucket.logs.id
  depends_on = [aws_s3_bucket_versioning.logs]

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_expiry_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiry_days
    }
  }
}

data "aws_iam_policy_document" "logs_bucket" {
  # Only S3 log delivery, only for the lake bucket of this account, only
  # under the s3-access/ prefix.
  statement {
    sid       = "AllowLakeBucketAccessLogDelivery"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${local.log_bucket_arn}/s3-access/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.bucket_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      local.log_bucket_arn,
      "${local.log_bucket_arn}/*",
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
}

resource "aws_s3_bucket_policy" "logs" {
  bucket     = aws_s3_bucket.logs.id
  policy     = data.aws_iam_policy_document.logs_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.logs]
}
