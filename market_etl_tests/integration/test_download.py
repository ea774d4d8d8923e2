"""The raw zone's download against the real loopback mirror (RELIABILITY cases 1-6 and 8)."""
import time

import pytest

from market_etl.core.download import (
    MAX_RETRY_AFTER_SECONDS, ChecksumMismatch, ChecksumMissing, DownloadError, NotPublished, RetryPolicy,
    check_base_url, download_archive,
)
from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl_devtools.mirror.generate import generate_month
from market_etl_devtools.mirror.server import MirrorServer

PART = TradePartition("BTCUSDT", "2025-07")
ZIP = "BTCUSDT-trades-2025-07.zip"
FAST = RetryPolicy(attempts=3, backoff_seconds=0.01)


@pytest.fixture
def mirror(tmp_path):
    generated = generate_month(tmp_path / "mirror", PART.symbol, PART.month, trades_per_day=200, seed=1)
    with MirrorServer(tmp_path / "mirror") as server:
        server.generated = generated
        yield server


def _download(mirror, lake, **kwargs):
    kwargs.setdefault("policy", FAST)
    kwargs.setdefault("timeout", (2.0, 2.0))
    return download_archive(PART, mirror.base_url, lake, **kwargs)


def _raw_objects(lake):
    return [o.key for o in lake.list("raw/")]


def test_downloads_and_verifies(mirror, any_lake):
    result = _download(mirror, any_lake)
    assert result.status == "downloaded"
    assert result.sha256 == mirror.generated.sha256
    assert result.bytes == mirror.generated.zip_path.stat().st_size
    assert result.last_modified
    key = lake_key(Zone.RAW, PART)
    assert _raw_objects(any_lake) == [key]
    with any_lake.open_read(key) as f:
        assert f.read() == mirror.generated.zip_path.read_bytes()
    assert any_lake.read_meta(key)["sha256"] == mirror.generated.sha256


def test_retries_5xx_then_succeeds(mirror, any_lake):
    mirror.set_fault(ZIP, "status", status=503, times=2)
    result = _download(mirror, any_lake)
    assert result.attempts == 3
    assert _raw_objects(any_lake) == [lake_key(Zone.RAW, PART)]
    assert mirror.count(ZIP) == 3


def test_not_published_fails_fast_and_writes_nothing(mirror, any_lake):
    mirror.set_fault(ZIP, "not_found")
    with pytest.raises(NotPublished, match="not published yet"):
        _download(mirror, any_lake)
    assert _raw_objects(any_lake) == []
    assert mirror.count(ZIP) <= 1  # one HEAD to tell "not published" from "checksum missing"; no retry storm


def test_truncated_body_leaves_nothing_then_retry_succeeds(mirror, any_lake):
    mirror.set_fault(ZIP, "truncate", after_bytes=1000, times=1)
    result = _download(mirror, any_lake)
    assert result.attempts == 2 and result.sha256 == mirror.generated.sha256
    assert any_lake.pending_writes() == []


def test_truncated_every_time_fails_visibly_with_nothing_left(mirror, any_lake):
    mirror.set_fault(ZIP, "truncate", after_bytes=1000)
    with pytest.raises(DownloadError, match="giving up after 3 attempts"):
        _download(mirror, any_lake)
    assert _raw_objects(any_lake) == [] and any_lake.pending_writes() == []


def test_checksum_mismatch_names_both_digests(mirror, any_lake):
    mirror.set_fault(ZIP + ".CHECKSUM", "wrong_checksum")
    with pytest.raises(ChecksumMismatch) as err:
        _download(mirror, any_lake)
    assert mirror.generated.sha256 in str(err.value)  # the digest of what arrived
    assert str(err.value).count("sha256") >= 1 and "CHECKSUM says" in str(err.value)
    assert _raw_objects(any_lake) == [] and any_lake.pending_writes() == []


def test_missing_checksum_fails_unless_opted_in(mirror, local_lake):
    mirror.set_fault(ZIP + ".CHECKSUM", "missing_checksum")
    with pytest.raises(ChecksumMissing, match="MARKET_ETL_ALLOW_MISSING_CHECKSUM"):
        _download(mirror, local_lake)
    assert _raw_objects(local_lake) == []
    result = _download(mirror, local_lake, allow_missing_checksum=True)
    assert result.status == "downloaded" and result.checksum_verified is False


def test_stalled_server_times_out_then_retries(mirror, local_lake):
    mirror.set_fault(ZIP, "stall", seconds=20, times=1)  # far past the read timeout: only the timeout ends it
    result = _download(mirror, local_lake, timeout=(2.0, 2.0))
    assert result.attempts == 2 and result.sha256 == mirror.generated.sha256


def test_same_digest_is_skipped_and_republish_replaces(mirror, any_lake, tmp_path):
    first = _download(mirror, any_lake)
    again = _download(mirror, any_lake)
    assert again.status == "up_to_date" and again.attempts == 0 and again.sha256 == first.sha256
    assert mirror.count(ZIP) == 1  # only the first run fetched the archive

    republished = generate_month(tmp_path / "mirror", PART.symbol, PART.month, trades_per_day=201, seed=1)
    assert republished.sha256 != first.sha256
    replaced = _download(mirror, any_lake)
    assert (replaced.status, replaced.previous_sha256, replaced.sha256) == ("replaced", first.sha256,
                                                                            republished.sha256)
    assert any_lake.read_meta(lake_key(Zone.RAW, PART))["previous_sha256"] == first.sha256


def test_retry_after_is_honoured(mirror, local_lake):
    """A 503 (or 429) with Retry-After: the next attempt waits that long, not the policy's short backoff."""
    mirror.set_fault(ZIP, "status", status=503, retry_after=7, times=1)
    waits = []
    result = _download(mirror, local_lake, sleep=waits.append)
    assert result.sha256 == mirror.generated.sha256
    assert waits == [7.0]  # FAST's own backoff would be ~0.01 s


def test_retry_after_is_capped(mirror, local_lake):
    mirror.set_fault(ZIP, "status", status=429, retry_after=86400, times=1)
    waits = []
    _download(mirror, local_lake, sleep=waits.append)
    assert waits == [MAX_RETRY_AFTER_SECONDS]


@pytest.mark.parametrize("base_url", ["http://data.binance.vision", "http://10.0.0.5:8000", "ftp://127.0.0.1/",
                                      "data.binance.vision"])
def test_plain_http_is_refused_unless_the_mirror_is_on_loopback(base_url, local_lake):
    with pytest.raises(DownloadError, match="loopback"):
        download_archive(PART, base_url, local_lake, policy=FAST)
    assert _raw_objects(local_lake) == []


@pytest.mark.parametrize("base_url", ["https://data.binance.vision", "http://127.0.0.1:8000", "http://[::1]:8000",
                                      "http://localhost:8000"])
def test_https_and_loopback_mirrors_are_accepted(base_url):
    check_base_url(base_url)


def test_download_stage_stopped_with_sigterm_leaves_no_upload(s3_lake, moto_endpoint, tmp_path):
    """Dagster cancelling a run and Glue timing the job out send SIGTERM: the download stage aborts its multipart
    upload on the way out (without the handler, the process dies on the spot and the upload stays behind)."""
    import hashlib
    import os
    import signal
    import subprocess
    import sys
    import time
    from urllib.parse import urlsplit

    from market_etl.core.binance import archive_url
    from market_etl.lake.s3 import DEFAULT_PART_SIZE

    # An archive bigger than one part, so the stage has a multipart upload open when the server stalls.
    root = tmp_path / "big-mirror"
    body = os.urandom(DEFAULT_PART_SIZE + (1 << 20))
    zip_path = root / urlsplit(archive_url("http://x", PART)).path.lstrip("/")
    zip_path.parent.mkdir(parents=True)
    zip_path.write_bytes(body)
    zip_path.with_name(zip_path.name + ".CHECKSUM").write_text(f"{hashlib.sha256(body).hexdigest()}  {ZIP}")
    with MirrorServer(root) as server:
        server.set_fault(ZIP, "stall", seconds=60, after_bytes=DEFAULT_PART_SIZE + 1000)
        proc = subprocess.Popen([sys.executable, "-m", "market_etl.stages.download", "--symbol", PART.symbol,
                                 "--month", PART.month, "--lake", s3_lake.url, "--s3-endpoint-url", moto_endpoint,
                                 "--base-url", server.base_url], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not s3_lake.pending_writes("raw/"):
            assert proc.poll() is None and time.monotonic() < deadline, "the upload never started"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert s3_lake.pending_writes("raw/") == []
    assert _raw_objects(s3_lake) == []


def test_truncated_body_resumes_with_a_range_request_and_the_digest_spans_the_whole_file(mirror, any_lake):
    """A body broken off after 1000 bytes: the next attempt asks for `bytes=1000-`, appends to the same write,
    and the SHA-256 (checked against the CHECKSUM) runs over all of it."""
    mirror.set_fault(ZIP, "truncate", after_bytes=1000, times=1)
    result = _download(mirror, any_lake)
    assert result.attempts == 2 and result.sha256 == mirror.generated.sha256
    assert mirror.range_starts(ZIP) == [1000]
    with any_lake.open_read(lake_key(Zone.RAW, PART)) as f:
        assert f.read() == mirror.generated.zip_path.read_bytes()
    assert any_lake.pending_writes() == []


def test_a_server_without_range_support_gets_a_fresh_download(tmp_path, local_lake):
    generated = generate_month(tmp_path / "m", PART.symbol, PART.month, trades_per_day=200, seed=1)
    with MirrorServer(tmp_path / "m", accept_ranges=False) as server:
        server.set_fault(ZIP, "truncate", after_bytes=1000, times=1)
        result = download_archive(PART, server.base_url, local_lake, policy=FAST, timeout=(2.0, 2.0))
        assert server.range_starts(ZIP) == []
    assert result.attempts == 2 and result.sha256 == generated.sha256
    assert local_lake.pending_writes() == []


def test_slow_drip_is_ended_by_the_deadline_per_attempt(mirror, local_lake):
    """Bytes keep coming, every read well within the read timeout, and the body would take minutes: the attempt
    ends at its deadline and the next one resumes from what it received."""
    mirror.set_fault(ZIP, "drip", chunk_bytes=16, interval=0.02, times=1)
    started = time.monotonic()
    result = _download(mirror, local_lake, timeout=(2.0, 1.0), attempt_deadline=3.0)
    assert time.monotonic() - started < 30
    assert result.attempts == 2 and result.sha256 == mirror.generated.sha256
    [resumed_from] = mirror.range_starts(ZIP)
    assert 0 < resumed_from < mirror.generated.zip_path.stat().st_size


def test_attempt_deadline_setting_reaches_the_download_stage():
    from market_etl.resources import build_resources
    from market_etl.settings import Settings

    args = build_resources(Settings.from_env({"MARKET_ETL_HTTP_ATTEMPT_DEADLINE": "42"}))["binance"].stage_args()
    assert args[args.index("--attempt-deadline") + 1] == "42.0"
