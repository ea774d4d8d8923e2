"""Every configuration default, declared once.

`market_etl.settings` (environment variables), the resources, the stage entry points' arguments and core
read them from here, so a default changed here changes everywhere. The README's configuration table
documents them.
"""

RUNTIME = "local"
LAKE = "./data/lake"
BINANCE_BASE_URL = "https://data.binance.vision"
#: The same archive listed as an S3 bucket (ListObjects XML): what the new-months sensor reads.
BINANCE_LISTING_URL = "https://s3-ap-northeast-1.amazonaws.com/data.binance.vision"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
FIRST_MONTH = "2025-07"
DOWNLOAD_CONCURRENCY = 2
ALLOW_MISSING_CHECKSUM = False
#: Connect timeout of one HTTP request to the archive, seconds.
HTTP_CONNECT_TIMEOUT_SECONDS = 10.0
#: Read timeout of one HTTP request to the archive, seconds.
HTTP_TIMEOUT_SECONDS = 30.0
#: Tries per download (the first included) before a transient error fails the step.
HTTP_ATTEMPTS = 5
#: Longest one attempt of an archive download may take, seconds: ends a server that drips bytes forever.
HTTP_ATTEMPT_DEADLINE_SECONDS = 1800.0
#: First retry delay, seconds; doubled each retry, with jitter.
RETRY_BACKOFF_SECONDS = 1.0
SENSOR_INTERVAL_SECONDS = 6 * 3600
AUTO_INGEST = False
#: Glue job of each stage: `<prefix><stage>` (terraform/glue_jobs.tf creates `market-etl-*`).
GLUE_JOB_PREFIX = "market-etl-"
#: Fraction of a partition's rows a validation rule may quarantine before its check fails.
REJECT_TOLERANCE = 0.0
#: Unzip steps at once on the local runtime (each inflates on one core with a bounded buffer).
UNZIP_CONCURRENCY = 2
#: aws: each Glue job's max_concurrent_runs (terraform variable glue_max_concurrent_runs), the pools' limit there.
GLUE_MAX_CONCURRENT_RUNS = 4
#: aws: the Athena workgroup queries run in (terraform/athena.tf names it after project_name).
ATHENA_WORKGROUP = "market-etl"
#: Step retries of the stage assets, and the first retry delay in seconds (exponential, with jitter).
STAGE_RETRIES = 2
STAGE_RETRY_DELAY_SECONDS = 60.0
#: Table maintenance: snapshots older than this are expired (time travel and rollback reach back this far) ...
SNAPSHOT_RETENTION_DAYS = 7.0
#: ... and data files no snapshot references are deleted once older than this.
ORPHAN_GRACE_DAYS = 3.0
