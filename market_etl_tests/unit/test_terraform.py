"""Consistency and least-privilege checks of terraform/ (docs/reliability.md 26-28).

No terraform binary can be installed here, so the HCL is parsed with
python-hcl2 and checked against what the code expects (job names, script
paths, the Iceberg tables of market_etl/core/tables.py and the Glue calls
pyiceberg makes to commit them) and against the security rules of the stack
(TLS-only buckets, public access blocked, lifecycle backstops, no wildcard
actions, no delete on raw/). One test runs checkov through scripts/checkov.sh,
in its own venv.

Values are compared as written in the HCL: simple locals and variable
defaults are substituted (``${local.prefix_raw}`` -> ``raw/``); references
to computed values (``${local.bucket_arn}``, resource attributes) stay as
they are and are compared as such.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from market_etl.core import tables as catalog
from market_etl.core.keys import TradePartition, new_run_id, staged_manifest_key, staged_rejected_file_key, staged_trades_file_key
from market_etl.core.tables import TABLES
from market_etl_devtools.package import python_shell_additional_modules

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "terraform"

# The Iceberg tables as the code declares them (market_etl/core/tables.py): Terraform names them for IAM.
TABLE_ARNS = {f"${{local.glue_table_arn_prefix}}{name}" for name in TABLES}
CATALOG_AND_DATABASE = {"${local.glue_catalog_arn}", "${local.glue_database_arn}"}

# Glue job name -> the stage script it runs (repo-relative). The scripts are
# planned; until they exist the test only requires the path to be one of these.
GLUE_JOB_SCRIPTS: dict[str, str] = {
    "market-etl-download": "market_etl/stages/download.py",
    "market-etl-unzip": "market_etl/stages/unzip.py",
    "market-etl-etl": "market_etl/stages/etl.py",
}
PYTHON_SHELL_JOBS = {"market-etl-download", "market-etl-unzip"}

BUCKET_ARN = "${local.bucket_arn}"
LOG_BUCKET_ARN = "${local.log_bucket_arn}"
KMS_KEY_ARN = "${aws_kms_key.lake.arn}"

_OPTIONS = SerializationOptions(
    strip_string_quotes=True,
    explicit_blocks=False,
    with_comments=False,
)
_REF = re.compile(r"\$\{(local|var)\.([A-Za-z0-9_]+)\}")


# =============================================================================
# Loading and resolving
# =============================================================================


@functools.cache
def _tf() -> dict[str, list[Any]]:
    """Every top-level block of every terraform/*.tf, merged by block kind."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(TF_DIR.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=_OPTIONS)
        for kind, blocks in parsed.items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def _named(kind: str) -> dict[str, dict[str, dict[str, Any]]]:
    """resource/data blocks as {type: {name: body}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for block in _tf().get(kind, []):
        for type_, by_name in block.items():
            for name, body in by_name.items():
                assert name not in out.setdefault(type_, {}), f"duplicate {kind} {type_}.{name}"
                out[type_][name] = body
    return out


def _resources(type_: str) -> dict[str, dict[str, Any]]:
    return _named("resource").get(type_, {})


def _data(type_: str) -> dict[str, dict[str, Any]]:
    return _named("data").get(type_, {})


def _flat(kind: str) -> dict[str, Any]:
    """variable/output/locals blocks as {name: body}."""
    out: dict[str, Any] = {}
    for block in _tf().get(kind, []):
        for name, body in block.items():
            assert name not in out, f"duplicate {kind} {name}"
            out[name] = body
    return out


def _resolve(value: Any) -> Any:
    """Substitute literal locals and scalar variable defaults, recursively."""
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item) for key, item in value.items()}
    if not isinstance(value, str):
        return value
    locals_, variables = _flat("locals"), _flat("variable")

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.groups()
        if kind == "local":
            literal = locals_.get(name)
            if isinstance(literal, str) and "${" not in literal:
                return literal
        else:
            default = variables.get(name, {}).get("default")
            if isinstance(default, (str, int, float)) and not isinstance(default, bool):
                return str(default)
        return match.group(0)

    previous = None
    while previous != value:
        previous, value = value, _REF.sub(substitute, value)
    return value


def _ref_name(expression: str, prefix: str, suffix: str) -> str:
    match = re.fullmatch(re.escape("${" + prefix) + r"([A-Za-z0-9_]+)" + re.escape(suffix + "}"), expression)
    assert match, f"{expression!r} is not a reference {prefix}<name>{suffix}"
    return match.group(1)


def _policy_doc_name(expression: str) -> str:
    """Name of the aws_iam_policy_document that `expression` (a .json) refers to."""
    return _ref_name(expression, "data.aws_iam_policy_document.", ".json")


def _statements(doc_name: str) -> list[dict[str, Any]]:
    """Statements of a policy document, including its source_policy_documents."""
    doc = _data("aws_iam_policy_document")[doc_name]
    statements: list[dict[str, Any]] = []
    for source in doc.get("source_policy_documents", []):
        statements.extend(_statements(_policy_doc_name(source)))
    for statement in doc.get("statement", []):
        statements.append({"_doc": doc_name, **_resolve(statement)})
    return statements


def _allows(statement: dict[str, Any]) -> bool:
    return statement.get("effect", "Allow") == "Allow"


def _role_statements(role: str) -> list[dict[str, Any]]:
    """Every statement granted to aws_iam_role.<role> (inline policies only)."""
    statements: list[dict[str, Any]] = []
    for policy in _resources("aws_iam_role_policy").values():
        if policy["role"] == f"${{aws_iam_role.{role}.id}}":
            statements.extend(_statements(_policy_doc_name(policy["policy"])))
    assert statements, f"aws_iam_role.{role} has no inline policy"
    return statements


def _lake_prefixes(statements: list[dict[str, Any]], action: str) -> set[str]:
    """Lake-bucket object prefixes on which the statements allow `action`."""
    prefixes = set()
    for statement in statements:
        if _allows(statement) and action in statement.get("actions", []):
            for resource in statement["resources"]:
                if resource.startswith(BUCKET_ARN + "/"):
                    prefixes.add(resource.removeprefix(BUCKET_ARN + "/"))
    return prefixes


def _constraint_pin(package: str) -> str:
    """The version constraints.txt pins `package` to."""
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if name.lower() == package:
            return version
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def _glue_jobs() -> dict[str, dict[str, Any]]:
    """Glue jobs by their (literal) job name."""
    return {job["name"]: job for job in _resources("aws_glue_job").values()}


def _for_bucket(type_: str, bucket: str) -> dict[str, Any]:
    """The single `type_` resource attached to aws_s3_bucket.<bucket>."""
    matches = [body for body in _resources(type_).values() if body["bucket"] == f"${{aws_s3_bucket.{bucket}.id}}"]
    assert len(matches) == 1, f"expected one {type_} for aws_s3_bucket.{bucket}, found {len(matches)}"
    return matches[0]


# =============================================================================
# Shape: versions, variables, outputs
# =============================================================================


def test_every_tf_file_parses() -> None:
    files = sorted(TF_DIR.glob("*.tf"))
    assert {path.name for path in files} >= {"versions.tf", "variables.tf", "outputs.tf"}
    assert _resources("aws_s3_bucket"), "no resources parsed"


def test_terraform_and_provider_are_pinned() -> None:
    (terraform,) = _tf()["terraform"]
    assert terraform["required_version"] == ">= 1.6, < 2.0"
    (providers,) = terraform["required_providers"]
    assert providers["aws"]["source"] == "hashicorp/aws"
    # One exact minor of the 5.x provider.
    assert re.fullmatch(r"~> 5\.\d+\.\d+", providers["aws"]["version"]), providers["aws"]["version"]
    (provider,) = _tf()["provider"]
    assert provider["aws"]["default_tags"], "tags belong in the provider's default_tags"


def test_every_variable_has_description_and_type() -> None:
    variables = _flat("variable")
    assert variables
    for name, body in variables.items():
        assert isinstance(body.get("description"), str) and body["description"].strip(), f"variable {name}: no description"
        assert body.get("type"), f"variable {name}: no type"


def test_required_variables_and_defaults() -> None:
    defaults = {name: body.get("default") for name, body in _flat("variable").items()}
    assert defaults["project_name"] == "market-etl"
    assert defaults["glue_etl_worker_count"] == 2
    assert defaults["glue_etl_worker_type"] == "G.1X"
    assert defaults["glacier_transition_days"] == 90
    assert defaults["abort_incomplete_multipart_days"] == 3
    for name in (
        "region",
        "bucket_name",
        "log_retention_days",
        "athena_bytes_scanned_cutoff",
        "kms_deletion_window_days",
        "raw_unzipped_expiry_days",
        "temp_expiry_days",
        "artifacts_dir",
        "package_version",
    ):
        assert name in defaults, f"variable {name} missing"


def test_every_output_has_description() -> None:
    outputs = _flat("output")
    for name, body in outputs.items():
        assert isinstance(body.get("description"), str) and body["description"].strip(), f"output {name}: no description"
    assert {
        "bucket_name",
        "glue_database_name",
        "glue_table_names",
        "glue_job_names",
        "glue_role_arns",
        "athena_workgroup_name",
        "kms_key_arn",
        "orchestrator_policy_arn",
    } <= outputs.keys()


# =============================================================================
# Glue: jobs, scripts, catalog
# =============================================================================


def test_glue_job_names_are_the_three_stages() -> None:
    assert set(_glue_jobs()) == set(GLUE_JOB_SCRIPTS)


def test_glue_job_scripts_are_the_stage_scripts_make_package_builds() -> None:
    """Each job runs its stage's script as `make package` copies it to dist/glue/jobs/ (re-uploaded when it changes)."""
    script = _resources("aws_s3_object")["stage_script"]
    assert script["source"] == "${local.artifacts_source}/jobs/${each.key}.py"
    assert script["source_hash"] == '${filemd5("${local.artifacts_source}/jobs/${each.key}.py")}'
    assert script["kms_key_id"] == KMS_KEY_ARN
    for name, job in _glue_jobs().items():
        (command,) = job["command"]
        match = re.fullmatch(r's3://\$\{aws_s3_bucket\.lake\.id\}/\$\{aws_s3_object\.stage_script\["(\w+)"\]\.key\}',
                             command["script_location"])
        assert match, f"{name}: script_location must point at an uploaded stage script: {command['script_location']}"
        assert f"market_etl/stages/{match.group(1)}.py" == GLUE_JOB_SCRIPTS[name], f"{name} runs {match.group(1)}"
        assert (REPO / GLUE_JOB_SCRIPTS[name]).is_file()


def test_glue_jobs_disable_bookmarks_and_leave_retries_to_dagster() -> None:
    for name, job in _glue_jobs().items():
        arguments = job["default_arguments"]
        assert arguments["--job-bookmark-option"] == "job-bookmark-disable", name
        assert arguments["--enable-continuous-cloudwatch-log"] == "true", name
        assert job["max_retries"] == 0, name
        assert job["timeout"], name
        assert job["security_configuration"] == "${aws_glue_security_configuration.this.name}", name
        (execution,) = job["execution_property"]
        assert int(_resolve(execution["max_concurrent_runs"])) > 1, f"{name}: a backfill needs concurrent runs"


def test_download_and_unzip_are_python_shell_with_pipes_for_39() -> None:
    for name in PYTHON_SHELL_JOBS:
        job = _glue_jobs()[name]
        (command,) = job["command"]
        assert command["name"] == "pythonshell"
        assert command["python_version"] == "3.9"
        assert float(_resolve(job["max_capacity"])) in (0.0625, 1.0)
        arguments = _resolve(job["default_arguments"])
        # What `make package` checked for CPython 3.9 wheels: dagster-pipes 1.10.21 (the last for 3.9), ...
        assert arguments["--additional-python-modules"] == python_shell_additional_modules(), name
        assert "dagster-pipes==1.10.21" in arguments["--additional-python-modules"].split(",")
        assert f"isal=={_constraint_pin('isal')}" in arguments["--additional-python-modules"].split(",")
        # The Python shell bundle, never the runtime wheel (Python >= 3.11, the Dagster/Spark stack as dependencies).
        assert arguments["--extra-py-files"] == "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.python_shell_bundle.key}"


def test_etl_is_glue_5_spark_sized_by_variables() -> None:
    job = _glue_jobs()["market-etl-etl"]
    (command,) = job["command"]
    assert command["name"] == "glueetl"
    assert command["python_version"] == "3"
    assert job["glue_version"] == "5.0"
    assert job["worker_type"] == "${var.glue_etl_worker_type}"
    assert job["number_of_workers"] == "${var.glue_etl_worker_count}"
    modules = _resolve(job["default_arguments"])["--additional-python-modules"].split(",")
    assert modules[0] == "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.runtime_wheel.key}"
    assert "dagster-pipes==1.13.27" in modules


def test_glue_security_configuration_encrypts_everything_with_kms() -> None:
    (config,) = _resources("aws_glue_security_configuration").values()
    (encryption,) = config["encryption_configuration"]
    assert encryption["s3_encryption"][0]["s3_encryption_mode"] == "SSE-KMS"
    assert encryption["cloudwatch_encryption"][0]["cloudwatch_encryption_mode"] == "SSE-KMS"
    assert encryption["job_bookmarks_encryption"][0]["job_bookmarks_encryption_mode"] == "CSE-KMS"
    for block in encryption.values():
        assert block[0]["kms_key_arn"] == KMS_KEY_ARN


def test_terraform_declares_the_database_and_leaves_the_tables_to_the_code() -> None:
    """One declaration of the tables: market_etl/core/tables.py. Terraform makes the database the code
    names and no Glue table (a Hive table, or an Iceberg one without the code's partition spec, would be
    loaded as it is and shadow the declaration); its output lists the tables the code creates."""
    (database,) = _resources("aws_glue_catalog_database").values()
    assert _resolve(database["name"]) == catalog.DATABASE
    assert not _resources("aws_glue_catalog_table"), "the tables are created by the code (glue_catalog.tf)"
    assert _flat("output")["glue_table_names"]["value"] == list(TABLES)
    locals_ = _flat("locals")
    assert _resolve(locals_["glue_database_arn"]).endswith(f":database/{catalog.DATABASE}")
    assert _resolve(locals_["glue_table_arn_prefix"]).endswith(f":table/{catalog.DATABASE}/")


# =============================================================================
# S3
# =============================================================================


def test_buckets_block_public_access() -> None:
    for bucket in _resources("aws_s3_bucket"):
        block = _for_bucket("aws_s3_bucket_public_access_block", bucket)
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            assert block[flag] is True, f"{bucket}: {flag}"


def test_buckets_are_versioned_and_kms_encrypted() -> None:
    for bucket in _resources("aws_s3_bucket"):
        versioning = _for_bucket("aws_s3_bucket_versioning", bucket)
        assert versioning["versioning_configuration"][0]["status"] == "Enabled", bucket
        (rule,) = _for_bucket("aws_s3_bucket_server_side_encryption_configuration", bucket)["rule"]
        (default,) = rule["apply_server_side_encryption_by_default"]
        assert default["sse_algorithm"] == "aws:kms", bucket
        assert default["kms_master_key_id"] == KMS_KEY_ARN, bucket


@pytest.mark.parametrize(("bucket", "arn"), [("lake", BUCKET_ARN), ("logs", LOG_BUCKET_ARN)])
def test_bucket_policy_denies_insecure_transport(bucket: str, arn: str) -> None:
    policy = _for_bucket("aws_s3_bucket_policy", bucket)
    denials = [
        statement
        for statement in _statements(_policy_doc_name(policy["policy"]))
        if statement["effect"] == "Deny"
        and {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]} in statement.get("condition", [])
    ]
    assert len(denials) == 1, f"{bucket}: no Deny on aws:SecureTransport = false"
    (deny,) = denials
    assert deny["actions"] == ["s3:*"]
    assert deny["principals"] == [{"type": "*", "identifiers": ["*"]}]
    assert set(deny["resources"]) == {arn, f"{arn}/*"}


# Storage classes whose objects GetObject refuses (InvalidObjectState) until restored.
NEEDS_RESTORE = {"GLACIER", "DEEP_ARCHIVE"}


def test_no_object_a_stage_reads_goes_to_a_storage_class_that_needs_a_restore() -> None:
    """Reprocessing an old month (unzip reads raw/, the ETL reads raw_unzipped/) must work without a manual step."""
    rules = _resolve(_for_bucket("aws_s3_bucket_lifecycle_configuration", "lake")["rule"])
    classes = {t["storage_class"] for rule in rules for key in ("transition", "noncurrent_version_transition")
               for t in rule.get(key, [])}
    assert classes and not classes & NEEDS_RESTORE, classes
    # ... so no role needs to restore anything.
    assert not any("RestoreObject" in path.read_text() for path in TF_DIR.glob("*.tf"))


def test_lake_lifecycle() -> None:
    rules = _resolve(_for_bucket("aws_s3_bucket_lifecycle_configuration", "lake")["rule"])
    assert all(rule["status"] == "Enabled" for rule in rules)

    def prefix_of(rule: dict[str, Any]) -> str:
        (filter_,) = rule["filter"]
        return filter_.get("prefix") or filter_.get("and", [{}])[0].get("prefix", "")

    by_prefix = {prefix_of(rule): rule for rule in rules}
    assert len(by_prefix) == len(rules), "one rule per prefix"

    (transition,) = by_prefix["raw/"]["transition"]
    # Glacier Instant Retrieval: an old month reprocesses without a restore (GetObject works as on Standard).
    assert (transition["storage_class"], transition["days"]) == ("GLACIER_IR", "90")
    # The small .meta.json sidecars stay in Standard (each one would be billed as 128 KiB in Glacier IR).
    (raw_filter,) = by_prefix["raw/"]["filter"][0]["and"]
    assert int(raw_filter["object_size_greater_than"]) >= 4096
    assert "expiration" not in by_prefix["raw/"], "raw/ is the source of truth: archived, never expired"
    for prefix in ("raw_unzipped/", "temp/"):
        assert by_prefix[prefix]["expiration"][0]["days"], prefix

    whole_bucket = by_prefix[""]
    assert whole_bucket["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == "3"
    assert whole_bucket["noncurrent_version_expiration"][0]["noncurrent_days"]


def test_lake_bucket_logs_to_the_log_bucket() -> None:
    logging = _for_bucket("aws_s3_bucket_logging", "lake")
    assert logging["target_bucket"] == "${aws_s3_bucket.logs.id}"


# =============================================================================
# IAM
# =============================================================================


def test_every_policy_is_a_checked_policy_document() -> None:
    """Inline jsonencode policies would escape the checks below."""
    attributes = {
        "aws_iam_role": "assume_role_policy",
        "aws_iam_role_policy": "policy",
        "aws_iam_policy": "policy",
        "aws_s3_bucket_policy": "policy",
        "aws_kms_key": "policy",
    }
    for type_, attribute in attributes.items():
        for name, body in _resources(type_).items():
            _policy_doc_name(body[attribute])  # asserts it is data.aws_iam_policy_document.<x>.json
    assert not _resources("aws_iam_role_policy_attachment"), "job roles get only the inline policies checked here"
    for name, role in _resources("aws_iam_role").items():
        assert "managed_policy_arns" not in role and "inline_policy" not in role, name


def test_no_wildcard_actions_in_any_allow() -> None:
    for doc_name in _data("aws_iam_policy_document"):
        for statement in _statements(doc_name):
            if not _allows(statement):
                continue
            sid = f"{doc_name}/{statement.get('sid')}"
            assert "not_actions" not in statement and "not_resources" not in statement, sid
            for action in statement["actions"]:
                assert action != "*" and not action.endswith(":*"), f"{sid}: wildcard action {action}"
                assert "*" not in action, f"{sid}: wildcard action {action}"


def test_deny_statements_are_only_the_tls_guard() -> None:
    """The only wildcard in any policy is `Deny s3:*` for non-TLS requests."""
    for doc_name in _data("aws_iam_policy_document"):
        for statement in _statements(doc_name):
            if not _allows(statement):
                assert statement["actions"] == ["s3:*"], doc_name
                assert {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]} in statement["condition"]


def test_resource_star_only_where_aws_requires_it() -> None:
    key_policies = {_policy_doc_name(key["policy"]) for key in _resources("aws_kms_key").values()}
    # cloudwatch:PutMetricData has no resource-level permissions.
    allowed = {("etl", "PublishGlueJobMetrics")}
    for doc_name in _data("aws_iam_policy_document"):
        for statement in _statements(doc_name):
            if not _allows(statement) or "*" not in statement.get("resources", []):
                continue
            if statement["_doc"] in key_policies:
                # In a key policy "*" is the key itself; never a wildcard principal.
                for principal in statement["principals"]:
                    assert "*" not in principal["identifiers"], statement["sid"]
                continue
            assert (statement["_doc"], statement.get("sid")) in allowed, f"{doc_name}/{statement.get('sid')}: Resource *"
            assert statement["actions"] == ["cloudwatch:PutMetricData"]
            assert statement["condition"], "PutMetricData must be limited to a namespace"


def test_each_job_role_writes_only_its_own_zones() -> None:
    expected_puts = {
        "download": {"raw/*", "pipes/*"},
        "unzip": {"raw_unzipped/*", "pipes/*"},
        "etl": {"processed/*", "rejected/*", "temp/*", "pipes/*"},
    }
    for role, prefixes in expected_puts.items():
        assert _lake_prefixes(_role_statements(role), "s3:PutObject") == prefixes, role
    # The download stage drops a zip's .meta.json sidecar before replacing the zip.
    assert _lake_prefixes(_role_statements("download"), "s3:DeleteObject") == {"raw/*.meta.json"}
    assert _lake_prefixes(_role_statements("unzip"), "s3:DeleteObject") == set()


def test_etl_role_deletes_in_derived_zones_only_never_raw() -> None:
    statements = _role_statements("etl")
    assert _lake_prefixes(statements, "s3:DeleteObject") == {"processed/*", "rejected/*", "temp/*"}
    for statement in statements:
        if _allows(statement) and any(action.startswith("s3:Delete") for action in statement["actions"]):
            for resource in statement["resources"]:
                assert not resource.startswith(f"{BUCKET_ARN}/raw"), f"ETL may delete {resource}"


def test_nothing_in_the_stack_may_delete_a_raw_zip() -> None:
    """Under raw/ only the download role's sidecar delete exists: no zip can be deleted."""
    for doc_name in _data("aws_iam_policy_document"):
        for statement in _statements(doc_name):
            if _allows(statement) and any(action.startswith("s3:Delete") for action in statement["actions"]):
                for resource in statement["resources"]:
                    if resource.startswith(f"{BUCKET_ARN}/raw/"):
                        where = f"{statement['_doc']}/{statement.get('sid')}"
                        assert statement["_doc"] == "download", f"{where} may delete in raw/"
                        assert statement["actions"] == ["s3:DeleteObject"], where
                        assert resource == f"{BUCKET_ARN}/raw/*.meta.json", f"{where} may delete {resource}"


def test_job_roles_make_no_catalog_calls() -> None:
    """The stages only write files; the orchestrator commits them. No job role may touch the catalog."""
    for role in ("download", "unzip", "etl"):
        for statement in _role_statements(role):
            glue = [action for action in statement["actions"] if action.startswith("glue:")]
            assert not glue, f"{role}/{statement.get('sid')} grants {glue}"


def test_job_roles_share_key_logs_and_pipes_access() -> None:
    for role in ("download", "unzip", "etl"):
        statements = _role_statements(role)
        kms = {action for statement in statements if KMS_KEY_ARN in statement["resources"] for action in statement["actions"]}
        assert {"kms:Decrypt", "kms:GenerateDataKey"} <= kms, role
        assert "pipes/*" in _lake_prefixes(statements, "s3:GetObject"), role
        logs = [statement for statement in statements if "logs:PutLogEvents" in statement["actions"]]
        assert logs, f"{role} cannot write its logs"


def test_orchestrator_policy_runs_only_the_three_jobs() -> None:
    (policy,) = _resources("aws_iam_policy").values()
    statements = _statements(_policy_doc_name(policy["policy"]))
    (run_jobs,) = [statement for statement in statements if "glue:StartJobRun" in statement["actions"]]
    assert {"glue:GetJobRun", "glue:BatchStopJobRun"} <= set(run_jobs["actions"])
    assert set(run_jobs["resources"]) == {f"${{aws_glue_job.{kind}.arn}}" for kind in ("download", "unzip", "etl")}
    athena = [statement for statement in statements if any(a.startswith("athena:") for a in statement["actions"])]
    assert athena and all(statement["resources"] == ["${aws_athena_workgroup.market_etl.arn}"] for statement in athena)
    assert "pipes/*" in _lake_prefixes(statements, "s3:PutObject")


def _orchestrator_statements() -> list[dict[str, Any]]:
    (policy,) = _resources("aws_iam_policy").values()
    return _statements(_policy_doc_name(policy["policy"]))


def _granted(statements: list[dict[str, Any]], action: str) -> set[str]:
    return {r for st in statements if _allows(st) and action in st["actions"] for r in st["resources"]}


def _glue_calls(method_names: set[str]) -> set[str]:
    """IAM actions of the Glue API calls pyiceberg's GlueCatalog makes from these methods, following its
    own helper methods (self._x(...)) into their calls (self.glue.get_table(...) -> glue:GetTable)."""
    import inspect

    from pyiceberg.catalog.glue import GlueCatalog

    seen: set[str] = set()
    calls: set[str] = set()
    todo = list(method_names)
    while todo:
        name = todo.pop()
        if name in seen or not hasattr(GlueCatalog, name):
            continue
        seen.add(name)
        source = inspect.getsource(getattr(GlueCatalog, name))
        calls |= set(re.findall(r"self\.glue\.([a-z_]+)\(", source))
        todo += re.findall(r"self\.(_?[a-z][a-z_]*)\(", source)
    return {"glue:" + "".join(part.title() for part in call.split("_")) for call in calls}


def test_orchestrator_may_make_every_glue_call_of_the_commit_path_on_the_declared_tables_only() -> None:
    """What pyiceberg's GlueCatalog calls when the pipeline loads, creates and commits a table
    (market_etl/lake/iceberg.py) is granted on the catalog, the database and each table of
    market_etl/core/tables.py by name; Athena's reads as well; nothing on partitions, nothing that drops."""
    statements = _orchestrator_statements()
    used = _glue_calls({"load_table", "create_table", "create_namespace", "commit_table", "list_tables"})
    assert {"glue:GetTable", "glue:CreateTable", "glue:UpdateTable", "glue:CreateDatabase"} <= used
    for action in used | {"glue:GetDatabase", "glue:GetTable"}:
        granted = _granted(statements, action)
        assert CATALOG_AND_DATABASE <= granted, action
        if action not in {"glue:CreateDatabase", "glue:GetDatabase", "glue:GetDatabases", "glue:GetTables"}:
            assert {r for r in granted if ":table/" in r or "glue_table_arn_prefix" in r} == TABLE_ARNS, action
    for action in ("glue:CreateTable", "glue:UpdateTable"):
        assert _granted(statements, action) == CATALOG_AND_DATABASE | TABLE_ARNS, action
    catalog_actions = {a for st in statements if _allows(st) for a in st["actions"] if a.startswith("glue:")}
    job_actions = {"glue:BatchStopJobRun", "glue:GetJob", "glue:GetJobRun", "glue:GetJobRuns", "glue:StartJobRun"}
    assert catalog_actions - job_actions == {"glue:CreateDatabase", "glue:CreateTable", "glue:GetDatabase",
                                             "glue:GetTable", "glue:GetTables", "glue:UpdateTable"}


def test_orchestrator_writes_iceberg_metadata_and_deletes_only_in_table_directories() -> None:
    """Commits write under each table's metadata/, maintenance deletes unreferenced files under each table's
    directory and killed runs' scratch; UNLOAD writes analytics/. It reads the staged files and manifests
    (processed/_staged/), the quarantine and every table. No write in raw/, raw_unzipped/ or the
    staged data files themselves: it commits them where the ETL wrote them."""
    statements = _orchestrator_statements()
    locations = {table.location_key for table in TABLES.values()}
    assert _lake_prefixes(statements, "s3:PutObject") == (
        {"pipes/*", "athena-results/*", "analytics/*"} | {f"{location}/metadata/*" for location in locations})
    assert _lake_prefixes(statements, "s3:DeleteObject") == (
        {"pipes/*", "analytics/*", "temp/*"} | {f"{location}/*" for location in locations})
    readable = _lake_prefixes(statements, "s3:GetObject")
    partition, run = TradePartition("BTCUSDT", "2024-01"), new_run_id()
    for key in (staged_manifest_key(partition, run), staged_trades_file_key(partition, 1, run),
                staged_rejected_file_key(partition, run),
                *(f"{location}/metadata/v1.metadata.json" for location in locations)):
        assert any(fnmatch.fnmatchcase(key, prefix) for prefix in readable), f"orchestrator cannot read {key}"


# =============================================================================
# KMS, logs, Athena
# =============================================================================


def test_kms_key_rotates_and_lets_cloudwatch_logs_encrypt() -> None:
    (key,) = _resources("aws_kms_key").values()
    assert key["enable_key_rotation"] is True
    assert key["deletion_window_in_days"] == "${var.kms_deletion_window_days}"
    statements = _statements(_policy_doc_name(key["policy"]))
    logs = [
        statement
        for statement in statements
        if any(principal["type"] == "Service" and principal["identifiers"][0].startswith("logs.") for principal in statement.get("principals", []))
    ]
    assert logs and "kms:GenerateDataKey" in logs[0]["actions"]


def test_glue_log_groups_have_retention_and_kms() -> None:
    groups = _resources("aws_cloudwatch_log_group")
    assert groups
    for name, group in groups.items():
        assert group["retention_in_days"] == "${var.log_retention_days}", name
        assert group["kms_key_id"] == KMS_KEY_ARN, name
    assert _resolve(_flat("locals")["glue_log_group_name"]) == "/aws-glue/jobs/market-etl"


def test_athena_workgroup_is_engine_v3_enforced_encrypted_and_capped() -> None:
    (workgroup,) = _resources("aws_athena_workgroup").values()
    assert _resolve(workgroup["name"]) == "market-etl"
    (configuration,) = workgroup["configuration"]
    assert configuration["enforce_workgroup_configuration"] is True
    assert configuration["publish_cloudwatch_metrics_enabled"] is True
    assert configuration["bytes_scanned_cutoff_per_query"] == "${var.athena_bytes_scanned_cutoff}"
    # Engine version 3 reads Iceberg tables natively (the aws runtime's tables are Iceberg).
    (engine,) = configuration["engine_version"]
    assert engine["selected_engine_version"] == "Athena engine version 3"
    (result,) = configuration["result_configuration"]
    assert _resolve(result["output_location"]) == "s3://${aws_s3_bucket.lake.id}/athena-results/"
    (encryption,) = result["encryption_configuration"]
    assert encryption == {"encryption_option": "SSE_KMS", "kms_key_arn": KMS_KEY_ARN}


# =============================================================================
# checkov
# =============================================================================

_INLINE_SKIP = re.compile(r"#\s*checkov:skip=(CKV2?_AWS_\d+):(.*)")
_BLOCK = re.compile(r'^(resource|data)\s+"([^"]+)"\s+"([^"]+)"')
_DOC_ROW = re.compile(r"^\|\s*(CKV2?_AWS_\d+)\s*\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|\s*$")


def _inline_skips() -> set[tuple[str, str]]:
    skips = set()
    for path in sorted(TF_DIR.glob("*.tf")):
        address = None
        for line in path.read_text().splitlines():
            block = _BLOCK.match(line)
            if block:
                kind, type_, name = block.groups()
                address = f"data.{type_}.{name}" if kind == "data" else f"{type_}.{name}"
            skip = _INLINE_SKIP.search(line)
            if skip:
                assert address, f"{path.name}: skip outside a block: {line}"
                assert skip.group(2).strip(), f"{path.name}: skip without a reason: {line}"
                skips.add((skip.group(1), address))
    return skips


def test_every_checkov_skip_is_listed_with_its_reason() -> None:
    documented = set()
    for line in (TF_DIR / "checkov-skips.md").read_text().splitlines():
        row = _DOC_ROW.match(line)
        if row:
            assert row.group(3).strip(), line
            documented.add((row.group(1), row.group(2)))
    assert _inline_skips() == documented


def test_checkov_config_skips_nothing_globally() -> None:
    config = (TF_DIR / ".checkov.yaml").read_text()
    assert not re.search(r"^\s*skip-check", config, re.MULTILINE), "skip per resource, inline, with a reason"
    assert re.search(r"^soft-fail:\s*false", config, re.MULTILINE)


def test_checkov_requirements_are_exact_pins() -> None:
    lines = [
        line.strip()
        for line in (TF_DIR / "checkov-requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "checkov==3.3.30" in lines
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+", line), f"not an exact pin: {line}"


def test_checkov_venv_is_git_ignored() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert any(line.strip().strip("/") == ".venv-checkov" for line in ignored)


@pytest.mark.timeout(900)
def test_checkov_passes_with_zero_failed_checks() -> None:
    """scripts/checkov.sh builds .venv-checkov when missing (a minute or two)."""
    result = subprocess.run(
        ["bash", "scripts/checkov.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    report = f"stdout:\n{result.stdout[-8000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report
    assert "Failed checks: 0" in result.stdout, report
