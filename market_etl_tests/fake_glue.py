"""A local stand-in for the AWS Glue service: test code only.

moto's Glue API keeps job definitions and job runs, but runs nothing: `get_job_run`
answers SUCCEEDED at once and `batch_stop_job_run` is not implemented. `LocalGlue` is
a boto3-compatible Glue client (the pattern of dagster-aws's own Glue tests) that
starts each job run as a local process of the very script the job definition points
at, and answers every other call from moto's Glue API on loopback.

What it simulates, and how:
- `start_job_run` reads the job from moto (`Command.ScriptLocation`), downloads that
  script from moto's S3 and runs `python <script> <DefaultArguments + Arguments + Glue's
  --JOB_ID/--JOB_RUN_ID/--JOB_NAME>` in a scratch directory, with `AWS_ENDPOINT_URL` set
  to moto (boto3 honours it: every AWS call of the job goes to loopback) and the repo on
  `PYTHONPATH` (what `--extra-py-files`/`--additional-python-modules` give the real job).
- `get_job_run` reports RUNNING, SUCCEEDED or FAILED (exit code; the output's tail as
  `ErrorMessage`) from that process; `batch_stop_job_run` kills it and reports STOPPED.
- It does not simulate Glue's runtimes: every job runs on this Python (3.11), not the
  Python shell's 3.9 (test_glue_runtime.py checks the 3.9 grammar separately), and a
  Spark job (`glueetl`) builds a local Spark session.
- Spark jobs and S3: NOT the real thing. Glue's Spark reads and writes `s3://` through
  EMRFS; no S3 filesystem for Spark can be installed here. Given `spark_s3_root`, the
  stand-in maps the buckets a Spark job's arguments name to local directories, synced with
  moto's S3 before and after the run (`LocalBucketsForSpark`). Python shell jobs use moto's
  S3 directly.
"""
from __future__ import annotations

import functools
import hashlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import boto3

import market_etl
from market_etl.resources.stages import GlueStageLauncher, glue_job_names

REPO_ROOT = Path(market_etl.__file__).resolve().parent.parent
FINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")
ERROR_TAIL_CHARS = 4000


@dataclass
class LocalJobRun:
    """One job run: its process and the file holding its stdout and stderr (Glue's output stream)."""

    process: subprocess.Popen
    output: Path
    on_exit: Callable[[], None] | None = None
    stopped: bool = False
    _state: str | None = field(default=None, init=False)

    def state(self) -> str:
        if self._state is None and (self.stopped or self.process.poll() is not None):
            if self.on_exit is not None:
                self.on_exit()
            self._state = ("STOPPED" if self.stopped else
                           "SUCCEEDED" if self.process.returncode == 0 else "FAILED")
        return self._state or "RUNNING"

    def output_tail(self) -> str:
        return self.output.read_text(errors="replace")[-ERROR_TAIL_CHARS:]


class LocalBucketsForSpark:
    """Test only: a Spark job's buckets as local directories, synced with moto's S3 around the run.

    On Glue, Spark reads and writes `s3://` through EMRFS. Here no S3 filesystem for Spark can be
    installed (hadoop-aws and the AWS SDK bundle are Maven artifacts, not on PyPI), so for a Spark
    job the stand-in copies each bucket its arguments name from moto into `<root>/<bucket>/`,
    passes `<root>/<bucket>/<key>` wherever an argument said `s3://<bucket>/<key>` (the job then
    works on a local lake: Spark and the lake API see the same files), and after the run applies to
    moto what the job created, changed or deleted there. Moto's bucket then holds what the job wrote.
    What this leaves out: the job's S3 code paths (on S3 its lake copies objects instead of
    renaming directories); those are tested against moto directly. Pipes messages still go to moto.
    """

    def __init__(self, root: Path, s3) -> None:
        self.root = Path(root)
        self.s3 = s3

    def localise(self, arguments: Mapping[str, str]) -> tuple[dict[str, str], dict[Path, str]]:
        """The arguments with s3:// URLs made local paths, and the md5 of each copied file (the sync base)."""
        buckets = sorted({v[len("s3://"):].split("/", 1)[0] for v in arguments.values() if v.startswith("s3://")})
        snapshot = {}
        for bucket in buckets:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    path = self.root / bucket / obj["Key"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self.s3.download_file(bucket, obj["Key"], str(path))
                    snapshot[path] = _md5(path)
        local = {name: str(self.root / value[len("s3://"):]) if value.startswith("s3://") else value
                 for name, value in arguments.items()}
        return local, snapshot

    def push(self, snapshot: dict[Path, str]) -> None:
        """Apply to moto what changed locally since `localise` (objects others wrote meanwhile stay)."""
        for path in sorted(self.root.rglob("*")):
            # Hadoop's local checksum sidecars (.crc) have no S3 counterpart.
            if path.is_file() and not path.name.endswith(".crc") and snapshot.get(path) != _md5(path):
                bucket, key = self._object(path)
                self.s3.upload_file(str(path), bucket, key)
        for path in snapshot:
            if not path.exists():
                bucket, key = self._object(path)
                self.s3.delete_object(Bucket=bucket, Key=key)

    def _object(self, path: Path) -> tuple[str, str]:
        bucket, *key = path.relative_to(self.root).parts
        return bucket, "/".join(key)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class LocalGlue:
    """boto3 Glue client whose job runs are local processes; every other call goes to moto's Glue.

    `spark_s3_root`: where Spark jobs find the buckets their arguments name (`LocalBucketsForSpark`);
    without it a Spark job gets no S3 filesystem at all.
    """

    def __init__(self, endpoint_url: str, work_dir: Path, region: str = "us-east-1",
                 spark_s3_root: Path | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.work_dir = Path(work_dir)
        self._glue = boto3.client("glue", endpoint_url=endpoint_url, region_name=region)
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self.spark_s3 = LocalBucketsForSpark(spark_s3_root, self._s3) if spark_s3_root else None
        self.runs: dict[str, LocalJobRun] = {}

    def __getattr__(self, name: str):
        # get_job, create_partition, meta, exceptions, ...: moto's Glue API answers.
        return getattr(self._glue, name)

    def start_job_run(self, JobName: str, Arguments: Mapping[str, str] | None = None, **kwargs) -> dict:
        job = self._glue.get_job(JobName=JobName)["Job"]
        arguments = dict(Arguments or {})
        run_id = self._glue.start_job_run(JobName=JobName, Arguments=arguments, **kwargs)["JobRunId"]
        run_dir = self.work_dir / run_id
        run_dir.mkdir(parents=True)
        script = self._download_script(job["Command"]["ScriptLocation"], run_dir)
        argv = {**job.get("DefaultArguments", {}), **arguments,
                "--JOB_ID": f"j_{uuid.uuid4().hex}", "--JOB_RUN_ID": run_id, "--JOB_NAME": JobName}
        on_exit = None
        if job["Command"]["Name"] == "glueetl" and self.spark_s3 is not None:
            argv, snapshot = self.spark_s3.localise(argv)
            on_exit = functools.partial(self.spark_s3.push, snapshot)
        command = [sys.executable, str(script)] + [token for pair in argv.items() for token in pair]
        output = run_dir / "output.log"
        with output.open("wb") as out:
            process = subprocess.Popen(command, cwd=run_dir, env=self._job_env(), stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.runs[run_id] = LocalJobRun(process=process, output=output, on_exit=on_exit)
        return {"JobRunId": run_id}

    def get_job_run(self, JobName: str, RunId: str, **kwargs) -> dict:
        response = self._glue.get_job_run(JobName=JobName, RunId=RunId, **kwargs)
        run = self.runs[RunId]
        response["JobRun"]["JobRunState"] = run.state()
        if run.state() == "FAILED":
            response["JobRun"]["ErrorMessage"] = run.output_tail()
        return response

    def batch_stop_job_run(self, JobName: str, JobRunIds: list[str]) -> dict:
        stopped, errors = [], []
        for run_id in JobRunIds:
            run = self.runs.get(run_id)
            if run is None or run.state() in FINAL_STATES:
                errors.append({"JobName": JobName, "JobRunId": run_id,
                               "ErrorDetail": {"ErrorCode": "InvalidInputException",
                                               "ErrorMessage": f"job run {run_id} is not running"}})
                continue
            os.killpg(run.process.pid, signal.SIGKILL)  # the job and its children (a Spark JVM)
            run.process.wait()
            run.stopped = True
            stopped.append({"JobName": JobName, "JobRunId": run_id})
        return {"SuccessfulSubmissions": stopped, "Errors": errors}

    def _download_script(self, script_location: str, run_dir: Path) -> Path:
        bucket, _, key = script_location.removeprefix("s3://").partition("/")
        script = run_dir / Path(key).name
        self._s3.download_file(bucket, key, str(script))
        return script

    def _job_env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("DAGSTER_", "PYTEST_"))}
        env["AWS_ENDPOINT_URL"] = self.endpoint_url
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env


# The job definitions of terraform/glue_jobs.tf, as far as a job run depends on them.
SCRIPT_KEY = "artifacts/glue/jobs/{stage}.py"
PYTHON_SHELL = {"Command": {"Name": "pythonshell", "PythonVersion": "3.9"},
                "DefaultArguments": {"--job-language": "python",
                                     "--job-bookmark-option": "job-bookmark-disable",
                                     "--additional-python-modules": "dagster-pipes==1.10.21"}}
SPARK = {"Command": {"Name": "glueetl", "PythonVersion": "3"}, "GlueVersion": "5.0",
         "DefaultArguments": {"--job-language": "python",
                              "--job-bookmark-option": "job-bookmark-disable",
                              "--python-modules-installer-option": "--no-deps"}}
JOB_KINDS = {"download": PYTHON_SHELL, "unzip": PYTHON_SHELL, "etl": SPARK}


def deploy_stage_jobs(endpoint_url: str, bucket: str, region: str = "us-east-1") -> dict[str, str]:
    """Upload the stage scripts of this repo to `bucket` and define their Glue jobs in moto.

    Returns stage -> job name. A missing script is an error: skipping it hid a moved stage directory.
    """
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
    glue = boto3.client("glue", endpoint_url=endpoint_url, region_name=region)
    deployed = {}
    for stage, job_name in glue_job_names().items():
        script = REPO_ROOT / "market_etl" / "stages" / f"{stage}.py"
        if not script.is_file():
            raise FileNotFoundError(f"stage script {script} not found: deploy_stage_jobs uploads the stage entry points")
        key = SCRIPT_KEY.format(stage=stage)
        s3.upload_file(str(script), bucket, key)
        kind = JOB_KINDS[stage]
        glue.create_job(
            Name=job_name, Role=f"arn:aws:iam::123456789012:role/{job_name}",
            **{**kind, "Command": {**kind["Command"], "ScriptLocation": f"s3://{bucket}/{key}"}},
        )
        deployed[stage] = job_name
    return deployed


class StandInGlueLauncher(GlueStageLauncher):
    """`GlueStageLauncher` whose Glue API is `LocalGlue` on moto (test code: production uses boto3's Glue)."""

    moto_endpoint: str
    work_dir: str
    spark_s3_root: str | None = None

    def glue_client(self) -> LocalGlue:
        return LocalGlue(self.moto_endpoint, Path(self.work_dir), region=self.region or "us-east-1",
                         spark_s3_root=Path(self.spark_s3_root) if self.spark_s3_root else None)
