"""The S3 lake (`s3://bucket/prefix`): objects written by streaming multipart uploads, aborted on every failure."""
from __future__ import annotations

import contextlib
import io
import signal
import threading
from typing import BinaryIO, Iterator

from market_etl.lake.base import META_SUFFIX, Lake, LakeWriter, ObjectInfo


# S3 multipart part sizing, next to the writer that uploads the parts.
#
# S3 limits: every part but the last is 5 MiB to 5 GiB, at most 10,000 parts.
# Fixed 5 MiB parts cap an object at ~48.8 GiB, so the part size is derived
# from the declared size of what is being uploaded. When the size is not known
# up front, parts grow so the 10,000-part limit is never reached below 5 TiB.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024**4
DEFAULT_PART_SIZE = 8 * 1024 * 1024
# Leave headroom: a declared size may be slightly wrong (we never trust it blindly).
_PLANNED_PARTS = 9_000
# Parts double every GROWTH_INTERVAL parts, which must reach MAX_OBJECT_SIZE within MAX_PARTS from the
# smallest start: GROWTH_INTERVAL * MIN_PART_SIZE * (2**(MAX_PARTS // GROWTH_INTERVAL) - 1) >= 5 TiB.
# Every 1,000 parts (10 doublings) reaches only 4.88 TiB from 5 MiB; every 909 (11 doublings) 9.1 TiB.
GROWTH_INTERVAL = MAX_PARTS // 11


class ObjectTooLarge(ValueError):
    pass


def part_size_for(declared_size: int | None, preferred: int = DEFAULT_PART_SIZE) -> int:
    """Part size for an upload of `declared_size` bytes (None: unknown)."""
    if declared_size is None:
        return max(preferred, MIN_PART_SIZE)
    if declared_size < 0:
        raise ValueError("declared size must be >= 0")
    if declared_size > MAX_OBJECT_SIZE:
        raise ObjectTooLarge(f"{declared_size} bytes exceeds the S3 object limit of {MAX_OBJECT_SIZE}")
    needed = -(-declared_size // _PLANNED_PARTS)
    return min(MAX_PART_SIZE, max(preferred, MIN_PART_SIZE, needed))


def next_part_size(current: int, parts_done: int) -> int:
    """Grow parts when an upload runs past its plan (size unknown or under-declared).

    Doubling every GROWTH_INTERVAL parts keeps any object up to 5 TiB under 10,000 parts,
    whatever part size it started with (property-tested in market_etl_tests/unit/test_s3_multipart.py).
    """
    if parts_done and parts_done % GROWTH_INTERVAL == 0:
        return min(MAX_PART_SIZE, current * 2)
    return current


def parse_s3_url(url: str) -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in lake URL {url!r}: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def s3_client(endpoint_url: str | None = None, region: str | None = None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


#: How a run is stopped (Dagster cancelling it, Glue timing a job out: SIGTERM; Ctrl-C: SIGINT).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """Stop signals arriving in the block reach their handlers when it ends, not inside it.

    Around the creation of a multipart upload: a stop landing after S3 created the upload but before
    its id reached us would leave an upload nothing can abort. Deferred, it lands once the id is
    known, and the writer's abort removes the upload. The delay is at most one API call. Python runs
    signal handlers in the main thread only, so a writer in another thread needs nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    deferred = [signum for signum, handler in previous.items() if handler is not None]  # None: set outside Python
    for signum in deferred:
        signal.signal(signum, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        for signum in deferred:
            signal.signal(signum, previous[signum])
        for signum in received:
            signal.raise_signal(signum)


class _S3Writer(LakeWriter):
    """A multipart upload; memory is bounded by one part buffer."""

    def __init__(self, client, bucket: str, key: str, expected_size: int | None) -> None:
        super().__init__()
        self.client, self.bucket, self.key = client, bucket, key
        self.part_size = part_size_for(expected_size)
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._upload_id: str | None = None

    def _start(self) -> None:
        with _stop_signals_deferred():
            resp = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self._upload_id = resp["UploadId"]

    def _flush_part(self, data: bytes | bytearray) -> None:
        if self._upload_id is None:
            self._start()
        number = len(self._parts) + 1
        resp = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=bytes(data)
        )
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        self.part_size = next_part_size(self.part_size, len(self._parts))

    def write(self, data: bytes | memoryview) -> None:
        self._buffer += data
        self.bytes_written += len(data)
        while len(self._buffer) >= self.part_size:
            # One copy of the part (bytes go to botocore as they are); a bytearray slice would be a second.
            with memoryview(self._buffer) as view:
                chunk = bytes(view[: self.part_size])
            self._flush_part(chunk)
            del self._buffer[: len(chunk)]

    def _commit(self) -> None:
        try:
            if self._upload_id is None:
                # Below one part: a single PUT is atomic by itself.
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer))
                return
            if self._buffer:
                self._flush_part(self._buffer)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        except BaseException:
            self._abort()
            raise
        finally:
            self._buffer = bytearray()

    def _abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None


class _S3Reader(io.RawIOBase):
    """Seekable reader: streams from the current offset, reopening with a Range GET after a seek."""

    def __init__(self, client, bucket: str, key: str, size: int) -> None:
        self.client, self.bucket, self.key, self.size = client, bucket, key, size
        self.pos = 0
        self._body = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        new = {io.SEEK_SET: offset, io.SEEK_CUR: self.pos + offset, io.SEEK_END: self.size + offset}[whence]
        if new != self.pos:
            self._close_body()
            self.pos = max(0, new)
        return self.pos

    def readinto(self, buffer) -> int:
        if self.pos >= self.size:
            return 0
        if self._body is None:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.pos}-")
            self._body = resp["Body"]
        data = self._body.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.pos += n
        return n

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._close_body()
        super().close()


class S3Lake(Lake):
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, client=None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client or s3_client(endpoint_url, region)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def object_key(self, key: str) -> str:
        if ".." in key.split("/"):
            raise ValueError(f"key {key!r} escapes the lake root")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1:] if self.prefix else object_key

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def info(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(key, head["ContentLength"])

    def writer(self, key: str, expected_size: int | None = None) -> LakeWriter:
        return _S3Writer(self.client, self.bucket, self.object_key(key), expected_size)

    def open_read(self, key: str) -> BinaryIO:
        info = self.info(key)
        if info is None:
            raise FileNotFoundError(self.uri(key))
        return io.BufferedReader(_S3Reader(self.client, self.bucket, self.object_key(key), info.size),
                                 buffer_size=MIN_PART_SIZE // 5)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)

    def get_bytes(self, key: str) -> bytes | None:
        if self.info(key) is None:
            return None
        return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"].read()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.object_key(prefix)):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(META_SUFFIX):
                    continue
                yield ObjectInfo(self._relative(obj["Key"]), obj["Size"], obj["LastModified"].timestamp())

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def move(self, source: str, target: str) -> None:
        # boto3's managed copy: CopyObject, or UploadPartCopy beyond its multipart threshold (all server-side).
        self.client.copy({"Bucket": self.bucket, "Key": self.object_key(source)}, self.bucket, self.object_key(target))
        self.delete(source)

    def pending_writes(self, prefix: str = "") -> list[str]:
        resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.object_key(prefix))
        return sorted(self._relative(u["Key"]) for u in resp.get("Uploads", []))
