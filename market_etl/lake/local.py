from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator

from market_etl.lake.base import META_SUFFIX, Lake, LakeWriter, ObjectInfo

# Spark and Hive skip names starting with "."; DuckDB globs do not, which is why the catalog lists files explicitly.
TEMP_MARKER = ".inprogress-"


class _LocalWriter(LakeWriter):
    def __init__(self, final: Path) -> None:
        super().__init__()
        final.parent.mkdir(parents=True, exist_ok=True)
        self.final = final
        self.temp = final.with_name(f"{TEMP_MARKER}{uuid.uuid4().hex}-{final.name}")
        self._file = open(self.temp, "wb")

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self.bytes_written += len(data)

    def _commit(self) -> None:
        self._file.close()
        os.replace(self.temp, self.final)

    def _abort(self) -> None:
        self._file.close()
        self.temp.unlink(missing_ok=True)


class LocalLake(Lake):
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve() if key else self.root
        if path != self.root and self.root not in path.parents:
            raise ValueError(f"key {key!r} escapes the lake root")
        return path

    def uri(self, key: str = "") -> str:
        return str(self.path(key))

    def info(self, key: str) -> ObjectInfo | None:
        p = self.path(key)
        return ObjectInfo(key, p.stat().st_size) if p.is_file() else None

    def writer(self, key: str, expected_size: int | None = None) -> LakeWriter:
        return _LocalWriter(self.path(key))

    def open_read(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as w:
            w.write(data)

    def get_bytes(self, key: str) -> bytes | None:
        p = self.path(key)
        return p.read_bytes() if p.is_file() else None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.path(prefix)
        if base.is_file():
            yield ObjectInfo(prefix, base.stat().st_size)
            return
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(TEMP_MARKER) or name.endswith(META_SUFFIX):
                    continue
                full = Path(dirpath) / name
                stat = full.stat()
                yield ObjectInfo(full.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def move(self, source: str, target: str) -> None:
        destination = self.path(target)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(source), destination)

    def pending_writes(self, prefix: str = "") -> list[str]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob(f"{TEMP_MARKER}*"))
