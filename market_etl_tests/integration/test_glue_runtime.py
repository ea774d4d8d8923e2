"""The aws runtime end to end without AWS: Dagster -> PipesGlueClient -> a Glue stand-in -> the job scripts.

Real parts: real Dagster runs with the aws runtime's resources (S3 lake, `GlueStageLauncher`,
`PipesS3ContextInjector`, S3 message reader), moto's S3 and Glue APIs on loopback, the
Binance mirror over HTTP, and the stage scripts uploaded to moto's S3 and run as local
processes by `market_etl_tests.fake_glue.LocalGlue` (test code; see its docstring for what it
does and does not simulate). Pipes context and messages travel through moto's S3: the test
checks that the check results arrived that way and not over the job's stdout.

Stated plainly: the ETL is a Glue Spark job, and Spark here has no S3 filesystem (hadoop-aws
cannot be installed), so the stand-in runs it on a local copy of the bucket and applies what
it wrote to moto's bucket after the run (`LocalBucketsForSpark`, test code only). The download
and unzip jobs, Pipes, and the catalog registration talk to moto's S3 and Glue APIs directly.
"""
import ast
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import boto3
import dagster as dg
import pyarrow.parquet as pq
import pytest

from market_etl.core.tables import DATABASE, TRADES
from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.definitions import build_definitions
from market_etl.defs.keys import PROCESSED_TRADES, RAW_TRADES_ZIP, RAW_UNZIPPED_TRADES_CSV, TRADES_TABLE_ASSET
from market_etl.stages._stage import flag_argument, parse_stage_args, stage_parser
from market_etl_devtools.mirror.generate import generate_mirror
from market_etl_devtools.mirror.server import MirrorServer
from market_etl.resources import build_resources
from market_etl.resources.sql import AthenaSqlEngine
from market_etl.resources.stages import GlueStageLauncher, glue_arguments
from market_etl.settings import Settings
from market_etl_tests.fake_glue import REPO_ROOT, StandInGlueLauncher, deploy_stage_jobs
from market_etl.lake import S3Lake
from market_etl.lake.iceberg import load_table, open_catalog, snapshot_files
from market_etl.resources.catalog import IcebergCatalogResource

REGION = "us-east-1"
SYMBOL, MONTH = "BTCUSDT", "2025-07"
PARTITION = TradePartition(SYMBOL, MONTH)
RAW = RAW_TRADES_ZIP
RAW_UNZIPPED = RAW_UNZIPPED_TRADES_CSV
PROCESSED = PROCESSED_TRADES
# The chain one partition goes through on the aws runtime, in order, and the Glue job behind each stage.
PIPELINE = [RAW, RAW_UNZIPPED, PROCESSED, TRADES_TABLE_ASSET]
GLUE_JOBS = {RAW: "market-etl-download", RAW_UNZIPPED: "market-etl-unzip", PROCESSED: "market-etl-etl"}
# Download and unzip run as Glue Python shell jobs: Python 3.9 only.
PYTHON_SHELL_MODULES = ["market_etl/stages/download.py", "market_etl/stages/unzip.py", "market_etl/stages/_stage.py"]


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    return root, generate_mirror(root, [SYMBOL], [MONTH], trades_per_day=20, seed=11)[0]


@pytest.fixture(scope="module")
def mirror(mirror_root):
    with MirrorServer(mirror_root[0]) as server:
        yield server


@pytest.fixture
def glue(moto_endpoint):
    """moto's Glue without a trades table: the publish step creates the Iceberg table from core.tables."""
    client = boto3.client("glue", endpoint_url=moto_endpoint, region_name=REGION)
    for spec_name in ("trades_binance", "trades_rejected"):
        try:
            client.delete_table(DatabaseName=DATABASE, Name=spec_name)
        except client.exceptions.EntityNotFoundException:
            pass
    return client


@pytest.fixture
def aws(moto_endpoint, s3_bucket, mirror, tmp_path):
    """The aws runtime's settings on moto, with the stage jobs deployed, and its Glue stand-in launcher."""
    deploy_stage_jobs(moto_endpoint, s3_bucket, REGION)
    env = {
        "MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": f"s3://{s3_bucket}/",
        "MARKET_ETL_S3_ENDPOINT_URL": moto_endpoint, "AWS_REGION": REGION,
        "BINANCE_BASE_URL": mirror.base_url, "MARKET_ETL_SYMBOLS": SYMBOL, "MARKET_ETL_FIRST_MONTH": MONTH,
        "MARKET_ETL_RETRY_BACKOFF": "0.01", "MARKET_ETL_HTTP_ATTEMPTS": "2",
    }
    settings = Settings.from_env(env)
    production = build_resources(settings)["stages"]
    launcher = StandInGlueLauncher(**{**production.model_dump(), "message_poll_seconds": 1.0},
                                   moto_endpoint=moto_endpoint, work_dir=str(tmp_path / "glue"),
                                   spark_s3_root=str(tmp_path / "spark-s3"))
    yield settings, launcher, env
    mirror.clear_faults()


def _materialize(settings, launcher, instance, assets):
    """One run of the aws runtime's definitions on moto: `stages` is the stand-in launcher, and the SQL
    engine's Glue and Athena clients go to moto."""
    defs = build_definitions(settings)
    sql = AthenaSqlEngine(**{**defs.resources["sql"].model_dump(), "endpoint_url": launcher.moto_endpoint})
    catalog = IcebergCatalogResource(**{**defs.resources["catalog"].model_dump(),
                                        "glue_endpoint_url": launcher.moto_endpoint})
    defs = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks,
                          resources={**defs.resources, "stages": launcher, "sql": sql, "catalog": catalog})
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(partition_key=PARTITION.dagster_key(), instance=instance,
                                  asset_selection=assets, raise_on_error=False)


def _metadata(result, key):
    [mat] = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
             if e.event_specific_data.materialization.asset_key == key]
    return {k: v.value for k, v in mat.metadata.items()}


def _checks(result):
    return {(c.asset_key, c.check_name): c for c in
            (e.event_specific_data for e in result.all_events
             if e.event_type_value == "ASSET_CHECK_EVALUATION")}


def _objects(s3, bucket, prefix) -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def _pipes_messages(endpoint, bucket) -> list[dict]:
    """Every Pipes message the jobs wrote to S3 (chunks under pipes/<run prefix>/<n>.json)."""
    chunks = [body.decode() for key, body in _objects(boto3.client("s3", endpoint_url=endpoint), bucket,
                                                      "pipes/").items() if not key.endswith("context.json")]
    return [json.loads(line) for chunk in chunks for line in chunk.splitlines() if line]


def test_one_partition_through_glue_and_moto(aws, glue, moto_endpoint, s3_bucket, mirror_root):
    """download -> unzip -> ETL -> catalog for one partition. The ETL (a Glue Spark job) works on a local
    copy of the bucket, synced with moto around its run: test code only, as `LocalBucketsForSpark` says."""
    settings, launcher, _env = aws
    generated = mirror_root[1]
    with dg.instance_for_test() as instance:
        result = _materialize(settings, launcher, instance, PIPELINE)
    assert result.success

    # raw/: the archive in the moto bucket, byte for byte the mirror's.
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    raw_key = lake_key(Zone.RAW, PARTITION)
    body = s3.get_object(Bucket=s3_bucket, Key=raw_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == generated.sha256
    raw = _metadata(result, RAW)
    assert raw["status"] == "downloaded" and raw["sha256"] == generated.sha256
    assert raw["lake_uri"] == f"s3://{s3_bucket}/{raw_key}"

    # raw_unzipped/: the CSV member, byte for byte.
    csv_key = lake_key(Zone.RAW_UNZIPPED, PARTITION)
    with zipfile.ZipFile(generated.zip_path) as archive:
        expected_csv = archive.read(generated.csv_name)
    assert s3.get_object(Bucket=s3_bucket, Key=csv_key)["Body"].read() == expected_csv
    assert _metadata(result, RAW_UNZIPPED)["lake_uri"] == f"s3://{s3_bucket}/{csv_key}"

    # processed/: one Parquet directory per trading day in the moto bucket, every source row in it.
    processed = _metadata(result, PROCESSED)
    parts = {key: body for key, body in _objects(s3, s3_bucket, lake_key(Zone.PROCESSED, PARTITION) + "/").items()
             if key.endswith(".parquet")}
    days = {int(re.search(r"/day=(\d+)/", key).group(1)) for key in parts}
    assert len(days) == processed["days_written"] > 0
    rows = sum(pq.read_metadata(io.BytesIO(body)).num_rows for body in parts.values())
    assert rows == processed["rows_written"] == processed["rows_in"] == generated.rows
    assert processed["dagster/row_count"] == rows
    assert sum(record.data["rows"] for record in processed["rows_per_day"].records) == rows

    # The publish: one Iceberg commit in moto's Glue adding exactly the staged files of the ETL's run.
    published = _metadata(result, TRADES_TABLE_ASSET)
    assert published["files_added"] == len(parts) and published["rows_added"] == generated.rows
    assert published["run_id"] == processed["run_id"] and published["snapshot_id"]
    table_entry = glue.get_table(DatabaseName=DATABASE, Name=TRADES.name)["Table"]
    assert table_entry["Parameters"]["table_type"].upper() == "ICEBERG"
    assert table_entry["Parameters"]["metadata_location"].startswith(f"s3://{s3_bucket}/processed/trades/metadata/")
    lake = S3Lake(s3_bucket, endpoint_url=moto_endpoint, region=REGION)
    table = load_table(open_catalog(lake, glue=True, region=REGION, glue_endpoint_url=moto_endpoint,
                                    s3_endpoint_url=moto_endpoint), lake, TRADES)
    assert {f.path for f in snapshot_files(table)} == {f"s3://{s3_bucket}/{key}" for key in parts}
    assert str(table.current_snapshot().snapshot_id) == published["snapshot_id"]

    # Each stage ran as one run of its Glue job, and moto's Glue recorded it with the partition's arguments.
    for asset, job_name in GLUE_JOBS.items():
        assert _metadata(result, asset)["AWS Glue Job Name"] == job_name
        [run] = [r for r in glue.get_job_runs(JobName=job_name)["JobRuns"]
                 if r["Arguments"]["--lake"] == settings.lake]  # moto's Glue is shared by the session's tests
        assert run["Arguments"]["--symbol"] == SYMBOL and run["Arguments"]["--month"] == MONTH
        # A link in the UI to the job run in Glue's console (dagster-aws's Pipes client adds it).
        assert _metadata(result, asset)["AWS Glue Job Run URL"].endswith(f"/job/{job_name}/run/{run['Id']}")

    # Check results came back through Pipes messages on S3, not over the jobs' stdout.
    checks = _checks(result)
    assert checks[(RAW, "checksum_verified")].passed
    assert {key for key, _name in checks} == {RAW, PROCESSED} and all(c.passed for c in checks.values())
    s3_checks = {m["params"]["check_name"] for m in _pipes_messages(moto_endpoint, s3_bucket)
                 if m["method"] == "report_asset_check"}
    assert {name for _key, name in checks} <= s3_checks
    outputs = list(Path(launcher.work_dir).glob("*/output.log"))
    assert len(outputs) == len(GLUE_JOBS)
    assert not any("__dagster_pipes_version" in p.read_text() for p in outputs)


def test_missing_checksum_opt_in_reaches_the_glue_job_as_an_argument(aws, moto_endpoint, mirror):
    """`--allow-missing-checksum` travels to Glue as `"true"`; the job accepts and reports a WARN check."""
    _settings, launcher, env = aws
    settings = Settings.from_env({**env, "MARKET_ETL_ALLOW_MISSING_CHECKSUM": "1"})
    mirror.set_fault(f"{SYMBOL}-trades-{MONTH}.zip", "missing_checksum")
    with dg.instance_for_test() as instance:
        result = _materialize(settings, launcher, instance, [RAW])
    assert result.success
    check = _checks(result)[(RAW, "checksum_verified")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN


def test_failed_glue_job_fails_the_step_with_the_stages_own_error(aws, mirror):
    """The step failure says what the stage said (not Glue's "completed with status FAILED" and an output tail),
    and a stage's verdict is not retried."""
    settings, launcher, _env = aws
    mirror.set_fault(f"{SYMBOL}-trades-{MONTH}.zip", "not_found")
    with dg.instance_for_test() as instance:
        result = _materialize(settings, launcher, instance, [RAW])
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.event_specific_data.user_failure_data.description
    assert description.startswith("stage 'download' failed: NotPublished: ") and "not published yet" in description
    assert "completed with status" not in description
    assert len(list(Path(launcher.work_dir).glob("*/market-etl-download.job"))) == 1  # no step retry


def test_transient_glue_failure_is_retried_and_the_partition_materialises_in_one_run(aws, mirror):
    """The first run of the download job fails as a Glue fault does (before the script starts); the asset's
    RetryPolicy starts a second one, which succeeds: one Dagster run, the partition materialised."""
    _settings, launcher, env = aws
    settings = Settings.from_env({**env, "MARKET_ETL_STAGE_RETRY_DELAY": "0.1"})
    flaky = StandInGlueLauncher(**{**launcher.model_dump(), "fail_first_runs": {"market-etl-download": 1}})
    with dg.instance_for_test() as instance:
        result = _materialize(settings, flaky, instance, [RAW])
        assert result.success
        assert [e.event_type_value for e in result.all_events].count("STEP_UP_FOR_RETRY") == 1
        assert _metadata(result, RAW)["status"] in ("downloaded", "up_to_date")
        assert len(list(Path(launcher.work_dir).glob("*/market-etl-download.job"))) == 2
        materialized = instance.get_latest_materialization_event(RAW)
        assert materialized is not None and materialized.run_id == result.run_id


def test_stage_log_lines_reach_the_dagster_run_through_pipes_on_s3(aws, mirror):
    """The stage's own lines (its Pipes log calls and the core modules' loggers) are in the run's logs."""
    settings, launcher, _env = aws
    mirror.set_fault(f"{SYMBOL}-trades-{MONTH}.zip", "status", times=1, status=503)
    with dg.instance_for_test() as instance:
        result = _materialize(settings, launcher, instance, [RAW])
        assert result.success
        messages = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any(m.startswith(f"downloading {PARTITION}") for m in messages), messages
    # core.download's retry warning, logged with the logging module inside the Glue job.
    assert any(m.startswith("market_etl.core.download: ") and "attempt 1 failed" in m for m in messages), messages


def test_aws_runtime_builds_the_glue_launcher_from_settings():
    settings = Settings.from_env({"MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": "s3://the-lake/",
                                  "MARKET_ETL_GLUE_JOB_PREFIX": "staging-etl-", "AWS_REGION": "eu-west-1"})
    stages = build_resources(settings)["stages"]
    assert isinstance(stages, GlueStageLauncher)
    assert stages.job_names == {"download": "staging-etl-download", "unzip": "staging-etl-unzip",
                                "etl": "staging-etl-etl"}
    assert (stages.pipes_bucket, stages.pipes_prefix, stages.region) == ("the-lake", "pipes/", "eu-west-1")
    other = Settings.from_env({"MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": "s3://the-lake/",
                               "MARKET_ETL_PIPES_BUCKET": "pipes-bucket"})
    assert build_resources(other)["stages"].pipes_bucket == "pipes-bucket"


def test_stage_arguments_become_glue_arguments_the_stage_parses_back():
    args = ["--symbol", SYMBOL, "--month", MONTH, "--lake", "s3://b/", "--base-url", "http://m",
            "--allow-missing-checksum", "--timeout", "3"]
    arguments = glue_arguments(args)
    assert arguments == {"--symbol": SYMBOL, "--month": MONTH, "--lake": "s3://b/", "--base-url": "http://m",
                         "--allow-missing-checksum": "true", "--timeout": "3"}
    parser = stage_parser("test")
    flag_argument(parser, "--allow-missing-checksum", help="")
    parser.add_argument("--base-url")
    parser.add_argument("--timeout", type=float)
    # What Glue hands the script: every pair, plus its own arguments.
    argv = [t for pair in arguments.items() for t in pair] + ["--JOB_RUN_ID", "jr_1", "--TempDir", "s3://t/"]
    parsed = parse_stage_args(parser, argv)
    assert parsed.allow_missing_checksum is True and parsed.timeout == 3.0 and parsed.lake == "s3://b/"
    assert parsed.partition == PARTITION
    glue_false = {**arguments, "--allow-missing-checksum": "false"}
    assert not parse_stage_args(parser, [t for pair in glue_false.items() for t in pair]).allow_missing_checksum
    assert parse_stage_args(parser, args).allow_missing_checksum is True  # local: a bare flag
    assert parse_stage_args(parser, args[:-3] + args[-2:]).allow_missing_checksum is False
    with pytest.raises(ValueError, match="given twice"):
        glue_arguments(["--symbol", "A", "--symbol", "B"])


@pytest.mark.parametrize("path", PYTHON_SHELL_MODULES)
def test_python_shell_stage_code_parses_as_python_3_9(path):
    """Glue Python shell runs 3.9: the stage scripts and every market_etl module they import must parse as 3.9."""
    for module in _market_etl_closure(REPO_ROOT / path):
        ast.parse(module.read_text(), filename=str(module), feature_version=(3, 9))


def _market_etl_closure(script: Path) -> set[Path]:
    """`script` and the market_etl modules it imports, transitively."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            # `from market_etl.core import defaults` imports the module market_etl.core.defaults too.
            names = ([node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                     if isinstance(node, ast.ImportFrom) and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.split(".")[0] == "market_etl":
                    todo.extend(_module_files(name))
    return seen


def _module_files(name: str) -> list[Path]:
    base = REPO_ROOT.joinpath(*name.split("."))
    parts = name.split(".")
    files = [REPO_ROOT.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
    files.append(base.with_suffix(".py"))
    return [f for f in files if f.exists()]
