"""Shared test fixtures: real servers on loopback, one SparkSession per test session."""
from __future__ import annotations

import os
import uuid

import pytest

# Tests never reach real AWS: fake credentials and a fixed region for boto3 against moto.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's server mode on loopback: a real S3 (and Glue, Athena) API endpoint."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint):
    """A fresh bucket on the moto server; returns its name."""
    import boto3

    name = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_lake(moto_endpoint, s3_bucket):
    from market_etl.lake import S3Lake

    return S3Lake(s3_bucket, "lake", endpoint_url=moto_endpoint, region="us-east-1")


@pytest.fixture
def local_lake(tmp_path):
    from market_etl.lake import LocalLake

    return LocalLake(tmp_path / "lake")


@pytest.fixture(params=["local", "s3"])
def any_lake(request):
    """Runs a test once on each lake kind."""
    return request.getfixturevalue(f"{request.param}_lake")


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test run (a session takes 10-30 s to start here)."""
    from market_etl.core.spark import build_spark_session

    session = build_spark_session("market-etl-tests", master="local[2]", shuffle_partitions=4)
    yield session
    session.stop()
