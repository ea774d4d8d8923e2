from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import BinaryIO, Iterator

META_SUFFIX = ".meta.json"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float | None = None  # seconds since the epoch, where the listing says (maintenance's grace period)


class LakeWriter(abc.ABC):
    """A streaming write that becomes visible only on `commit()`.

    Used as a context manager: leaving the block normally commits, leaving it
    with an exception aborts (nothing partial stays behind).
    """

    def __init__(self) -> None:
        self.bytes_written = 0
        self._done = False

    @abc.abstractmethod
    def write(self, data: bytes | memoryview) -> None: ...

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def _abort(self) -> None: ...

    def commit(self) -> None:
        if not self._done:
            self._commit()
            self._done = True

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def __enter__(self) -> "LakeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Lake(abc.ABC):
    """Keys are `/`-separated and relative to the lake root (see core.keys.lake_key)."""

    url: str

    @abc.abstractmethod
    def uri(self, key: str = "") -> str:
        """Where an engine (Spark, DuckDB, Athena) finds `key`."""

    @abc.abstractmethod
    def info(self, key: str) -> ObjectInfo | None: ...

    @abc.abstractmethod
    def writer(self, key: str, expected_size: int | None = None) -> LakeWriter: ...

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A seekable binary reader."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix` (recursive), temporary and sidecar files excluded."""

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def move(self, source: str, target: str) -> None:
        """Give an object a new key without its bytes passing through this process (rename; S3: server-side copy)."""

    @abc.abstractmethod
    def pending_writes(self, prefix: str = "") -> list[str]:
        """Writes started but neither committed nor aborted (incomplete multipart uploads / temp files)."""

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def delete_prefix(self, prefix: str) -> int:
        keys = [o.key for o in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def read_meta(self, key: str) -> dict | None:
        raw = self.get_bytes(key + META_SUFFIX)
        return None if raw is None else json.loads(raw)

    def write_meta(self, key: str, meta: dict) -> None:
        self.put_bytes(key + META_SUFFIX, json.dumps(meta, sort_keys=True, indent=1).encode())

    def delete_meta(self, key: str) -> None:
        self.delete(key + META_SUFFIX)
