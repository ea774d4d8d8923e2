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
  Spark job gets local Spark.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

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
    stopped: bool = False
    _state: str | None = field(default=None, init=False)

    def state(self) -> str:
        if self._state is None:
            if self.stopped:
                self._state = "STOPPED"
            elif self.process.poll() is not None:
                self._state = "SUCCEEDED" if self.process.returncode == 0 else "FAILED"
        return self._state or "RUNNING"

    def output_tail(self) -> str:
        return self.output.read_text(errors="replace")[-ERROR_TAIL_CHARS:]


class LocalGlue:
    """boto3 Glue client whose job runs are local processes; every other call goes to moto's Glue.

    `extra_env` adds environment variables to every job run (e.g. a test-only path map).
    """

    def __init__(self, endpoint_url: str, work_dir: Path, region: str = "us-east-1",
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.work_dir = Path(work_dir)
        self.extra_env = dict(extra_env or {})
        self._glue = boto3.client("glue", endpoint_url=endpoint_url, region_name=region)
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
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
        command = [sys.executable, str(script)] + [token for pair in argv.items() for token in pair]
        output = run_dir / "output.log"
        with output.open("wb") as out:
            process = subprocess.Popen(command, cwd=run_dir, env=self._job_env(), stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.runs[run_id] = LocalJobRun(process=process, output=output)
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

    def stop_all(self) -> None:
        """Kill every run still going (test teardown)."""
        for run_id, run in self.runs.items():
            if run.state() == "RUNNING":
                self.batch_stop_job_run(JobName="", JobRunIds=[run_id])

    def _download_script(self, script_location: str, run_dir: Path) -> Path:
        bucket, _, key = script_location.removeprefix("s3://").partition("/")
        script = run_dir / Path(key).name
        self._s3.download_file(bucket, key, str(script))
        return script

    def _job_env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("DAGSTER_", "PYTEST_"))}
        env.update(self.extra_env)
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

    Only stages whose script exists are deployed (stages land one by one). Returns stage -> job name.
    """
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
    glue = boto3.client("glue", endpoint_url=endpoint_url, region_name=region)
    deployed = {}
    for stage, job_name in glue_job_names().items():
        script = REPO_ROOT / "market_etl" / "jobs" / f"{stage}.py"
        if not script.exists():
            continue
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

    def glue_client(self) -> LocalGlue:
        return LocalGlue(self.moto_endpoint, Path(self.work_dir), region=self.region or "us-east-1")
