"""Stream a Binance monthly archive into the lake's raw zone, verified by SHA-256.

Three outcomes besides success are kept apart on purpose, so users can act:
NotPublished (404: the month is not out yet; nothing to retry), ChecksumMismatch
(the bytes are not what Binance announced), and transient errors (5xx, timeouts,
truncated bodies) that are retried with exponential backoff and jitter.
Nothing becomes visible in the raw zone unless the digest matches.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import requests

from market_etl.core import defaults
from market_etl.core.binance import archive_name, archive_url, checksum_url, parse_checksum
from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.lake import Lake

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


class DownloadError(RuntimeError):
    """A download that failed for good; the message says what to do."""


class NotPublished(DownloadError):
    pass


class ChecksumMissing(DownloadError):
    pass


class ChecksumMismatch(DownloadError):
    pass


class TransientError(RuntimeError):
    """Worth another try: 5xx, connection errors, timeouts, truncated bodies."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = defaults.HTTP_ATTEMPTS
    backoff_seconds: float = defaults.RETRY_BACKOFF_SECONDS
    max_backoff_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class DownloadResult:
    status: str  # downloaded | replaced | up_to_date
    url: str
    key: str
    sha256: str
    bytes: int
    seconds: float
    attempts: int
    last_modified: str | None = None
    previous_sha256: str | None = None
    checksum_verified: bool = True

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_metadata(self) -> dict:
        meta = {k: v for k, v in asdict(self).items() if v is not None}
        meta["mb_per_s"] = round(self.mb_per_s, 1)
        meta["seconds"] = round(self.seconds, 3)
        return meta


def _with_retries(what: str, policy: RetryPolicy, fn: Callable[[], object], sleep=time.sleep):
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn(), attempt
        except TransientError as err:
            if attempt == policy.attempts:
                raise DownloadError(f"{what}: giving up after {attempt} attempts: {err}") from err
            delay = policy.delay(attempt)
            log.warning("%s: attempt %d failed (%s); retrying in %.1fs", what, attempt, err, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _check_status(resp: requests.Response, url: str) -> None:
    if resp.status_code >= 500 or resp.status_code == 429:
        raise TransientError(f"HTTP {resp.status_code} from {url}")
    if resp.status_code != 200 and resp.status_code != 404:
        raise DownloadError(f"unexpected HTTP {resp.status_code} from {url}")


def _request(session: requests.Session, method: str, url: str, timeout) -> requests.Response:
    try:
        resp = session.request(method, url, timeout=timeout, stream=(method == "GET"))
    except (requests.ConnectionError, requests.Timeout) as err:
        raise TransientError(f"{type(err).__name__} for {url}: {err}") from err
    _check_status(resp, url)
    return resp


def fetch_expected_sha256(session, base_url: str, partition: TradePartition, timeout,
                          policy: RetryPolicy, allow_missing: bool) -> str | None:
    url = checksum_url(base_url, partition)

    def get():
        resp = _request(session, "GET", url, timeout)
        try:
            return resp.status_code, resp.text if resp.status_code == 200 else ""
        except requests.RequestException as err:
            raise TransientError(f"reading {url}: {err}") from err

    (status, text), _ = _with_retries(f"GET {url}", policy, get)
    if status == 200:
        return parse_checksum(text, archive_name(partition))
    (head, _) = _with_retries(f"HEAD {archive_url(base_url, partition)}", policy,
                              lambda: _request(session, "HEAD", archive_url(base_url, partition), timeout))
    if head.status_code == 404:
        raise NotPublished(
            f"{partition}: {archive_name(partition)} is not published yet at {base_url} "
            "(Binance publishes a month a few days after it ends); try again later"
        )
    if not allow_missing:
        raise ChecksumMissing(
            f"{partition}: the archive exists but {url} is missing (404). Refusing to download an "
            "unverifiable file; set MARKET_ETL_ALLOW_MISSING_CHECKSUM=1 to accept it with a warning"
        )
    log.warning("%s: no CHECKSUM published; downloading unverified (explicit opt-in)", partition)
    return None


def download_archive(
    partition: TradePartition,
    base_url: str,
    lake: Lake,
    *,
    allow_missing_checksum: bool = defaults.ALLOW_MISSING_CHECKSUM,
    timeout: tuple[float, float] = (defaults.HTTP_CONNECT_TIMEOUT_SECONDS, defaults.HTTP_TIMEOUT_SECONDS),
    policy: RetryPolicy = RetryPolicy(),
    session: requests.Session | None = None,
) -> DownloadResult:
    session = session or requests.Session()
    key = lake_key(Zone.RAW, partition)
    url = archive_url(base_url, partition)
    started = time.monotonic()
    expected = fetch_expected_sha256(session, base_url, partition, timeout, policy, allow_missing_checksum)

    previous = lake.read_meta(key) if lake.exists(key) else None
    previous_sha = previous.get("sha256") if previous else None
    if expected is not None and previous_sha == expected:
        return DownloadResult(
            status="up_to_date", url=url, key=key, sha256=expected, bytes=lake.info(key).size,
            seconds=time.monotonic() - started, attempts=0, last_modified=previous.get("last_modified"),
        )

    def stream_once():
        resp = _request(session, "GET", url, timeout)
        if resp.status_code == 404:
            raise NotPublished(f"{partition}: {url} disappeared (404) after its CHECKSUM was found")
        declared = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
        digest = hashlib.sha256()
        with lake.writer(key, expected_size=declared) as out:
            try:
                for chunk in resp.iter_content(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            except (requests.RequestException, OSError) as err:
                raise TransientError(f"body of {url} broke off after {out.bytes_written} bytes: {err}") from err
            if declared is not None and out.bytes_written != declared:
                raise TransientError(f"body of {url} truncated: {out.bytes_written} of {declared} bytes")
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                raise ChecksumMismatch(
                    f"{partition}: sha256 mismatch for {url}: CHECKSUM says {expected}, "
                    f"downloaded bytes hash to {actual}; nothing was written"
                )
            # The sidecar goes first so a crash between the two leaves "unknown version" (re-download),
            # never a new object described by the old digest.
            lake.delete_meta(key)
        return actual, out.bytes_written, resp.headers.get("Last-Modified")

    (actual, size, last_modified), attempts = _with_retries(f"GET {url}", policy, stream_once)
    lake.write_meta(key, {
        "sha256": actual,
        "source_url": url,
        "last_modified": last_modified,
        "bytes": size,
        "checksum_verified": expected is not None,
        "downloaded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "previous_sha256": previous_sha,
    })
    return DownloadResult(
        status="replaced" if previous_sha else "downloaded",
        url=url, key=key, sha256=actual, bytes=size, seconds=time.monotonic() - started,
        attempts=attempts, last_modified=last_modified, previous_sha256=previous_sha,
        checksum_verified=expected is not None,
    )
