"""Stream a Binance monthly archive into the lake's raw zone, verified by SHA-256.

Three outcomes besides success are kept apart on purpose, so users can act:
NotPublished (404: the month is not out yet; nothing to retry), ChecksumMismatch
(the bytes are not what Binance announced), and transient errors (5xx, timeouts,
truncated bodies) that are retried with exponential backoff and jitter.
Nothing becomes visible in the raw zone unless the digest matches.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import ipaddress
import logging
import http.client
import random
import re
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

import requests

from market_etl.core import defaults
from market_etl.core.binance import archive_name, archive_url, checksum_url, parse_checksum
from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.core.storage import Storage

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024
#: Bytes per read of a body: small enough that the per-attempt deadline is checked often on a slow server
#: (a read returns when this many bytes arrived), large enough to cost nothing at full speed.
READ_CHUNK = 64 * 1024
#: The longest one attempt of the archive's GET may take, however steadily the bytes trickle in (per-read
#: timeouts never end a slow drip). A monthly BTCUSDT archive (~2-3 GB) at a poor 10 MB/s takes ~5 minutes.
DEFAULT_ATTEMPT_DEADLINE_SECONDS = defaults.HTTP_ATTEMPT_DEADLINE_SECONDS


class _ResumableBody:
    """The archive's bytes across attempts: one lake write and one running SHA-256, so a broken-off body
    resumes with a Range request from what was received instead of starting over."""

    def __init__(self, lake: Storage, key: str) -> None:
        self.lake, self.key = lake, key
        self.writer = None
        self.digest = hashlib.sha256()
        self.declared: int | None = None
        self.last_modified: str | None = None

    @property
    def received(self) -> int:
        return self.writer.bytes_written if self.writer is not None else 0

    def open(self, declared: int | None, last_modified: str | None) -> None:
        self.writer = self.lake.writer(self.key, expected_size=declared)
        self.declared, self.last_modified = declared, last_modified

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.writer.write(chunk)

    def restart(self) -> None:
        self.abort()
        self.digest = hashlib.sha256()

    def commit(self) -> None:
        self.writer.commit()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


class _DeadlineExceeded(Exception):
    pass


def _body_reads(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: each read returns what is there (up to READ_CHUNK), never waits for a full chunk.

    So a slow drip still comes back between reads (the per-attempt deadline is checked there), and a body that
    breaks off yields every byte received before it, which a resumed attempt then does not fetch again
    (`iter_content` would drop a partly filled chunk with the error). The archive is requested with
    `Accept-Encoding: identity`, so the raw bytes are the file's bytes."""
    raw = getattr(resp.raw, "_fp", None)  # http.client.HTTPResponse under urllib3 1.26 and 2.x
    if raw is None or not hasattr(raw, "read1"):
        yield from resp.iter_content(READ_CHUNK)
        return
    while True:
        chunk = raw.read1(READ_CHUNK)
        if not chunk:
            return
        yield chunk


def _continues_at(resp: requests.Response, start: int, total: int | None) -> bool:
    """Whether `resp` is the rest of the same file from byte `start` (206 with a matching Content-Range)."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", "").strip())
    return (resp.status_code == 206 and match is not None and int(match.group(1)) == start
            and (total is None or match.group(3) == str(total)))


class DownloadError(RuntimeError):
    """A download that failed for good; the message says what to do."""


class NotPublished(DownloadError):
    pass


class ChecksumMissing(DownloadError):
    pass


class ChecksumMismatch(DownloadError):
    pass


class TransientError(RuntimeError):
    """Worth another try: 5xx, connection errors, timeouts, truncated bodies.

    `retry_after`: seconds the server asked to wait (its Retry-After header), if it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: The longest Retry-After honoured: a server asking for more is waited on this long, then tried again.
MAX_RETRY_AFTER_SECONDS = 300.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def check_base_url(base_url: str) -> None:
    """https, or plain http to a loopback mirror only: archives and checksums must not travel in clear text.

    The SHA-256 check catches a corrupted archive, not a forged archive served with its forged CHECKSUM."""
    parts = urlsplit(base_url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return
        raise DownloadError(
            f"{base_url}: plain http is accepted only for a mirror on loopback (127.0.0.1, ::1, localhost); "
            f"use https for {host}")
    raise DownloadError(f"{base_url}: expected an https:// URL (or http:// to a loopback mirror)")


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
            if err.retry_after is not None:  # the server said when: never earlier than that
                delay = max(delay, min(err.retry_after, MAX_RETRY_AFTER_SECONDS))
            log.warning("%s: attempt %d failed (%s); retrying in %.1fs", what, attempt, err, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _check_status(resp: requests.Response, url: str) -> None:
    if resp.status_code >= 500 or resp.status_code == 429:
        raise TransientError(f"HTTP {resp.status_code} from {url}",
                             retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
    if resp.status_code not in (200, 206, 404):
        raise DownloadError(f"unexpected HTTP {resp.status_code} from {url}")


def _request(session: requests.Session, method: str, url: str, timeout,
             headers: dict[str, str] | None = None) -> requests.Response:
    try:
        resp = session.request(method, url, timeout=timeout, stream=(method == "GET"), headers=headers)
    except (requests.ConnectionError, requests.Timeout) as err:
        raise TransientError(f"{type(err).__name__} for {url}: {err}") from err
    _check_status(resp, url)
    return resp


def fetch_expected_sha256(session, base_url: str, partition: TradePartition, timeout,
                          policy: RetryPolicy, allow_missing: bool, sleep=time.sleep) -> str | None:
    url = checksum_url(base_url, partition)

    def get():
        resp = _request(session, "GET", url, timeout)
        try:
            return resp.status_code, resp.text if resp.status_code == 200 else ""
        except requests.RequestException as err:
            raise TransientError(f"reading {url}: {err}") from err

    (status, text), _ = _with_retries(f"GET {url}", policy, get, sleep)
    if status == 200:
        return parse_checksum(text, archive_name(partition))
    (head, _) = _with_retries(f"HEAD {archive_url(base_url, partition)}", policy,
                              lambda: _request(session, "HEAD", archive_url(base_url, partition), timeout), sleep)
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


def already_downloaded(partition: TradePartition, base_url: str, lake: Storage, expected: str | None,
                       started: float | None = None) -> DownloadResult | None:
    """The raw archive in the lake, when it is the one whose sha256 the source publishes now (`expected`)."""
    key = lake_key(Zone.RAW, partition)
    previous = lake.read_meta(key) if lake.exists(key) else None
    if expected is None or not previous or previous.get("sha256") != expected:
        return None
    return DownloadResult(
        status="up_to_date", url=archive_url(base_url, partition), key=key, sha256=expected,
        bytes=lake.info(key).size, seconds=time.monotonic() - (started or time.monotonic()), attempts=0,
        last_modified=previous.get("last_modified"),
    )


def download_archive(
    partition: TradePartition,
    base_url: str,
    lake: Storage,
    *,
    allow_missing_checksum: bool = defaults.ALLOW_MISSING_CHECKSUM,
    timeout: tuple[float, float] = (defaults.HTTP_CONNECT_TIMEOUT_SECONDS, defaults.HTTP_TIMEOUT_SECONDS),
    policy: RetryPolicy = RetryPolicy(),
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    attempt_deadline: float | None = DEFAULT_ATTEMPT_DEADLINE_SECONDS,
) -> DownloadResult:
    check_base_url(base_url)
    session = session or requests.Session()
    key = lake_key(Zone.RAW, partition)
    url = archive_url(base_url, partition)
    started = time.monotonic()
    expected = fetch_expected_sha256(session, base_url, partition, timeout, policy, allow_missing_checksum, sleep)
    if (kept := already_downloaded(partition, base_url, lake, expected, started)) is not None:
        return kept
    previous = lake.read_meta(key) if lake.exists(key) else None
    previous_sha = previous.get("sha256") if previous else None

    body = _ResumableBody(lake, key)

    def stream_once():
        received = body.received
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={received}-"} if received else {})}
        resp = _request(session, "GET", url, timeout, headers=headers)
        if resp.status_code == 404:
            raise NotPublished(f"{partition}: {url} disappeared (404) after its CHECKSUM was found")
        if received and not _continues_at(resp, received, body.declared):
            # The server sent the whole file again (no range support, or the file changed): start over.
            log.warning("%s: no usable range answer (HTTP %d) to resume from byte %d; downloading from 0",
                        url, resp.status_code, received)
            body.restart()
        if body.writer is None:
            declared = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
            body.open(declared, resp.headers.get("Last-Modified"))
        ends = time.monotonic() + attempt_deadline if attempt_deadline else None
        try:
            for chunk in _body_reads(resp):
                body.write(chunk)
                if ends is not None and time.monotonic() > ends:
                    raise _DeadlineExceeded()
        except _DeadlineExceeded:
            resp.close()
            raise TransientError(f"GET {url} exceeded its {attempt_deadline:g} s deadline per attempt after "
                                 f"{body.received} bytes (server too slow)") from None
        except (requests.RequestException, OSError, http.client.HTTPException) as err:
            raise TransientError(f"body of {url} broke off after {body.received} bytes: {err}") from err
        if body.declared is not None and body.received != body.declared:
            raise TransientError(f"body of {url} truncated: {body.received} of {body.declared} bytes")
        actual = body.digest.hexdigest()
        if expected is not None and actual != expected:
            raise ChecksumMismatch(
                f"{partition}: sha256 mismatch for {url}: CHECKSUM says {expected}, "
                f"downloaded bytes hash to {actual}; nothing was written"
            )
        # The sidecar goes first so a crash between the two leaves "unknown version" (re-download),
        # never a new object described by the old digest.
        lake.delete_meta(key)
        body.commit()
        return actual, body.received, body.last_modified

    try:
        (actual, size, last_modified), attempts = _with_retries(f"GET {url}", policy, stream_once, sleep)
    except BaseException:
        body.abort()  # failed for good, or stopped: nothing partial stays behind
        raise
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
