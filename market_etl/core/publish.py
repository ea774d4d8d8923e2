"""Make a staged write visible all at once: swap staged directories into their final lake keys.

The ETL writes a partition's output into the temp zone; only once everything succeeded (rules,
dedupe, verification) are the staged directories moved into processed/ and rejected/. A run killed
before that leaves the previous version untouched; its staged files are cleared by the next run.

Local lake: each day directory is swapped with one `renameat2(RENAME_EXCHANGE)`, so a reader sees the
old day or the new day, whole, never a mix or nothing. S3 has no rename: objects are copied server-side
and the old ones deleted afterwards; there readers go through the catalog, which registers a partition
only after its checks passed. Part files get stable names (`part-00000.snappy.parquet`, ...) so a re-run
over the same input leaves byte-identical files under identical keys.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from market_etl.lake import Lake, LocalLake, ObjectInfo, S3Lake

_SPARK_PART = re.compile(r"part-[^/]*\.parquet")
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@dataclass(frozen=True)
class PublishedDirectory:
    key: str
    files: tuple[ObjectInfo, ...]

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


def staged_parts(lake: Lake, staged_dir: str) -> list[ObjectInfo]:
    """The Parquet part files directly under `staged_dir`, in Spark's task order (Spark's side files excluded)."""
    prefix = staged_dir.rstrip("/") + "/"
    return sorted((o for o in lake.list(prefix)
                   if "/" not in o.key[len(prefix):] and _SPARK_PART.fullmatch(o.key[len(prefix):])),
                  key=lambda o: o.key)


def part_name(index: int) -> str:
    return f"part-{index:05d}.snappy.parquet"


def publish_directory(lake: Lake, staged_dir: str, final_dir: str) -> PublishedDirectory:
    """Replace whatever is under `final_dir` with the part files under `staged_dir`."""
    if isinstance(lake, LocalLake):
        return _publish_local(lake, staged_dir, final_dir)
    if isinstance(lake, S3Lake):
        return _publish_s3(lake, staged_dir, final_dir)
    raise TypeError(f"cannot publish into a {type(lake).__name__}")


def clear(lake: Lake, prefix: str) -> None:
    """Delete everything under `prefix` (a local directory goes entirely, empty subdirectories included)."""
    if isinstance(lake, LocalLake):
        shutil.rmtree(lake.path(prefix), ignore_errors=True)
    else:
        lake.delete_prefix(prefix.rstrip("/") + "/")


def remove_directory(lake: Lake, final_dir: str, scratch_dir: str) -> int:
    """Remove a published directory (a day no longer in the source); local: it disappears in one rename."""
    if isinstance(lake, LocalLake):
        final = lake.path(final_dir)
        if not final.is_dir():
            return 0
        trash = lake.path(f"{scratch_dir}/removed-{uuid.uuid4().hex}")
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(final, trash)
        shutil.rmtree(trash)
        return 1
    return int(lake.delete_prefix(final_dir.rstrip("/") + "/") > 0)


def _publish_local(lake: LocalLake, staged_dir: str, final_dir: str) -> PublishedDirectory:
    staged, final = lake.path(staged_dir), lake.path(final_dir)
    parts = staged_parts(lake, staged_dir)
    keep = set()
    for index, part in enumerate(parts):
        name = part_name(index)
        os.rename(lake.path(part.key), staged / name)
        keep.add(name)
    for leftover in staged.iterdir():  # Spark's .crc checksums and _SUCCESS markers
        if leftover.name not in keep:
            leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover)
    if final.is_dir():
        _exchange(staged, final)
        shutil.rmtree(staged)  # now the previous version
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, final)
    files = tuple(ObjectInfo(f"{final_dir}/{name}", (final / name).stat().st_size) for name in sorted(keep))
    return PublishedDirectory(final_dir, files)


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two directories (Linux renameat2); elsewhere two renames with a brief gap."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        aside = b.with_name(f".{b.name}.old-{uuid.uuid4().hex}")
        os.rename(b, aside)
        os.rename(a, b)
        os.rename(aside, a)
        return
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"renameat2(RENAME_EXCHANGE) {a} <-> {b}: {os.strerror(code or errno.EIO)}")


def _publish_s3(lake: S3Lake, staged_dir: str, final_dir: str) -> PublishedDirectory:
    parts = staged_parts(lake, staged_dir)
    old = {o.key for o in lake.list(final_dir.rstrip("/") + "/")}
    files = []
    for index, part in enumerate(parts):
        key = f"{final_dir}/{part_name(index)}"
        lake.client.copy_object(Bucket=lake.bucket, Key=lake.object_key(key),
                                CopySource={"Bucket": lake.bucket, "Key": lake.object_key(part.key)})
        files.append(ObjectInfo(key, part.size))
    for key in old - {f.key for f in files}:
        lake.delete(key)
    lake.delete_prefix(staged_dir.rstrip("/") + "/")
    return PublishedDirectory(final_dir, tuple(files))
