"""Stream the single CSV member of a Binance archive into the raw_unzipped zone, in bounded memory.

Why not `zipfile.ZipFile.open()`: stdlib zlib inflates ~185 MB/s of CSV where
ISA-L (python-isal) does ~3x that, and zipfile trusts the sizes the archive
announces (CVE-2019-9674). So `zipfile` only reads the central directory (after
a bounded look at the end record), the local header is parsed here, and the
member's deflate stream is inflated with a bounded output per step. Bytes are
counted as they stream: the member may never inflate past its declared size,
the size cap or the ratio cap, and its CRC-32 and exact size are verified
before the output is committed. Memory is set by READ_SIZE + OUTPUT_STEP (+ the
S3 part buffer), never by the archive.

The output key comes only from the validated partition; the member name is
compared with the one Binance uses and never used to build a path.
Importable on Python 3.9 (Glue Python shell); falls back to stdlib zlib where
python-isal is not installed.
"""
from __future__ import annotations

import datetime as dt
import struct
import time
import zipfile
from dataclasses import asdict, dataclass
from typing import BinaryIO, Callable, Iterator

from market_etl.core.binance import csv_member_name
from market_etl.core.keys import TradePartition, UpstreamMissing, Zone, lake_key
from market_etl.core.metadata import ROW_COUNT
from market_etl.core.storage import Storage

try:  # ISA-L: ~3x stdlib zlib; the same decompressobj/crc32 interface.
    from isal import isal_zlib as _zlib

    INFLATE_ENGINE = "isal"
except ImportError:  # pragma: no cover - only where python-isal is missing (a bare Glue Python shell)
    import zlib as _zlib

    INFLATE_ENGINE = "zlib"

READ_SIZE = 256 * 1024  # compressed bytes per read: >= OUTPUT_STEP, so most outputs fill a whole step
OUTPUT_STEP = 256 * 1024  # most inflated bytes held at once: CRC, line count and write stay in L2 cache
DEFAULT_MAX_BYTES = 256 * 1024**3  # a busy BTCUSDT month is a few tens of GB
DEFAULT_MAX_RATIO = 20.0  # real archives inflate ~3.5-4x; zip bombs ~1000x
# One entry's central directory record is at most 46 + 3 * 65535 bytes.
MAX_CENTRAL_DIRECTORY = 256 * 1024

_EOCD = struct.Struct("<4s4H2LH")  # signature, disk numbers, entries here/total, size, offset, comment length
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_MAX_EOCD_SEARCH = _EOCD.size + 0xFFFF  # end record + the longest archive comment


class ArchiveError(ValueError):
    """The archive is not what Binance publishes for this partition; the message says why."""


class CorruptArchive(ArchiveError):
    """Damaged bytes: bad structure, broken deflate stream, CRC or size mismatch."""


class UnsafeArchive(ArchiveError):
    """Well-formed but not acceptable: extra members, unexpected names, encryption, odd compression."""


class ArchiveTooLarge(UnsafeArchive):
    """Over the size or compression-ratio cap (a zip bomb, or limits set too low)."""


@dataclass(frozen=True)
class UnzipLimits:
    max_uncompressed_bytes: int = DEFAULT_MAX_BYTES
    max_ratio: float = DEFAULT_MAX_RATIO


@dataclass(frozen=True)
class Member:
    """The archive's one member, as its central directory and local header describe it."""

    name: str
    method: int
    compressed_size: int
    declared_size: int
    crc32: int
    data_offset: int


@dataclass(frozen=True)
class StreamStats:
    uncompressed_bytes: int
    lines: int
    crc32: int
    seconds: float


@dataclass(frozen=True)
class UnzipResult:
    status: str  # built | rebuilt | up_to_date
    key: str
    source_key: str
    source_sha256: str
    compressed_bytes: int
    uncompressed_bytes: int
    lines: int
    seconds: float
    previous_source_sha256: str | None = None
    inflate: str = INFLATE_ENGINE

    @property
    def mb_per_s(self) -> float:
        """MB of CSV written per second (0 when nothing was written)."""
        return self.uncompressed_bytes / 1e6 / self.seconds if self.status != "up_to_date" and self.seconds else 0.0

    def as_metadata(self, lake_uri: str | None = None) -> dict:
        meta = {k: v for k, v in asdict(self).items() if v is not None}
        meta["seconds"] = round(self.seconds, 3)
        meta["mb_per_s"] = round(self.mb_per_s, 1)
        if lake_uri is not None:
            meta["lake_uri"] = lake_uri
        meta[ROW_COUNT] = self.lines  # lines of the CSV member (a header line counts)
        return meta


def _read_exactly(fp: BinaryIO, offset: int, size: int, what: str) -> bytes:
    if offset < 0:
        raise CorruptArchive(f"damaged archive: {what} would start before the file does")
    fp.seek(offset)
    data = fp.read(size)
    if len(data) != size:
        raise CorruptArchive(f"archive truncated: {what} at byte {offset} is cut off")
    return data


def _central_directory_extent(fp: BinaryIO, archive_size: int) -> tuple[int, int]:
    """(entries, central directory bytes) from the end record, reading at most ~64 KiB.

    Checked before zipfile reads the directory: zipfile holds all of it in memory, and
    seeks wherever a damaged end record points.
    """
    tail_size = min(archive_size, _MAX_EOCD_SEARCH)
    tail = _read_exactly(fp, archive_size - tail_size, tail_size, "end of central directory")
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise CorruptArchive("not a zip archive: no end-of-central-directory record")
    _sig, _disk, _cd_disk, _here, entries, cd_size, cd_offset, _comment = _EOCD.unpack_from(tail, at)
    directory_end = archive_size - tail_size + at
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:  # ZIP64: see the zip64 end record
        locator_at = directory_end - _ZIP64_LOCATOR.size
        sig, _disk, directory_end, _disks = _ZIP64_LOCATOR.unpack(
            _read_exactly(fp, locator_at, _ZIP64_LOCATOR.size, "zip64 locator"))
        record = _read_exactly(fp, directory_end, _ZIP64_EOCD.size, "zip64 end record")
        if sig != b"PK\x06\x07" or record[:4] != b"PK\x06\x06" or directory_end > locator_at:
            raise CorruptArchive("zip64 end-of-central-directory record is missing or damaged")
        entries, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)[7:10]
    if cd_offset + cd_size > directory_end:
        raise CorruptArchive(f"damaged end record: the central directory ({cd_size} bytes at {cd_offset}) "
                             f"overlaps the end record at {directory_end}")
    return entries, cd_size


def _check_name(name: str, expected: str) -> None:
    if "/" in name or "\\" in name or ".." in name or "\x00" in name:
        raise UnsafeArchive(f"member name {name!r} has path components; expected exactly {expected!r}")
    if name != expected:
        raise UnsafeArchive(f"unexpected member {name!r}; Binance names this partition's CSV {expected!r}")


def locate_member(fp: BinaryIO, archive_size: int, expected_name: str,
                  limits: UnzipLimits = UnzipLimits()) -> Member:
    """Validate the archive's structure and return where its one member's data starts.

    Rejects, before inflating anything: not exactly one member, a name other than
    `expected_name` (in the central directory or the local header), encryption,
    compression other than stored/deflate, and declared sizes over the caps.
    """
    entries, cd_size = _central_directory_extent(fp, archive_size)
    if entries != 1:
        raise UnsafeArchive(f"archive has {entries} members; a Binance monthly archive has exactly 1 "
                            f"({expected_name!r})")
    if cd_size > MAX_CENTRAL_DIRECTORY:
        raise UnsafeArchive(f"central directory of {cd_size} bytes for one member (limit {MAX_CENTRAL_DIRECTORY})")
    fp.seek(0)
    try:
        infos = zipfile.ZipFile(fp).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, struct.error) as err:
        raise CorruptArchive(f"central directory is damaged: {err}") from err
    except UnicodeDecodeError as err:  # the UTF-8 name flag set on a name that is not UTF-8
        raise CorruptArchive(f"central directory is damaged: a member name flagged UTF-8 is not ({err})") from err
    if len(infos) != 1:
        raise UnsafeArchive(f"archive lists {len(infos)} members; expected exactly 1 ({expected_name!r})")
    info = infos[0]
    _check_name(info.orig_filename, expected_name)
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"member {info.orig_filename!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise UnsafeArchive(f"member compressed with method {info.compress_type}; only stored (0) and "
                            "deflate (8) are supported")
    check_declared_size(info.file_size, info.compress_size, limits)
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise CorruptArchive(f"stored member declares {info.file_size} bytes but holds {info.compress_size}")

    header = _read_exactly(fp, info.header_offset, _LOCAL_HEADER.size, "local file header")
    sig, _version, _flags, _method, _time, _date, _crc, _csize, _usize, name_len, extra_len = \
        _LOCAL_HEADER.unpack(header)
    if sig != b"PK\x03\x04":
        raise CorruptArchive(f"no local file header at byte {info.header_offset}")
    local_name = _read_exactly(fp, info.header_offset + _LOCAL_HEADER.size, name_len, "member name")
    _check_name(local_name.decode("utf-8", "replace"), expected_name)
    data_offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if data_offset + info.compress_size > archive_size:
        raise CorruptArchive(f"archive truncated: member data ends at byte {data_offset + info.compress_size} "
                             f"of a {archive_size}-byte file")
    return Member(name=expected_name, method=info.compress_type, compressed_size=info.compress_size,
                  declared_size=info.file_size, crc32=info.CRC, data_offset=data_offset)


def check_declared_size(declared: int, compressed: int, limits: UnzipLimits) -> None:
    """The caps, applied to the header's claims (the streamed bytes are held to the same claims)."""
    if declared > limits.max_uncompressed_bytes:
        raise ArchiveTooLarge(f"member declares {declared} bytes, over the cap of {limits.max_uncompressed_bytes} "
                              "(a genuine archive this large needs the unzip stage's --max-bytes raised)")
    if declared > limits.max_ratio * max(compressed, 1):
        raise ArchiveTooLarge(f"member declares a {declared / max(compressed, 1):.0f}:1 compression ratio, over "
                              f"the cap of {limits.max_ratio:g}:1: a zip bomb, or a genuine archive that needs "
                              "the unzip stage's --max-ratio raised")


def _compressed_chunks(fp: BinaryIO, member: Member) -> Iterator[bytes]:
    fp.seek(member.data_offset)
    remaining = member.compressed_size
    while remaining:
        chunk = fp.read(min(READ_SIZE, remaining))
        if not chunk:
            raise CorruptArchive(f"archive truncated: {remaining} bytes of member data missing")
        remaining -= len(chunk)
        yield chunk


def _inflated_chunks(fp: BinaryIO, member: Member) -> Iterator[bytes]:
    """The member's bytes, at most OUTPUT_STEP at a time, whatever the compression ratio."""
    if member.method == zipfile.ZIP_STORED:
        yield from _compressed_chunks(fp, member)
        return
    inflater = _zlib.decompressobj(-15)  # raw deflate: zip members have no zlib header
    try:
        for data in _compressed_chunks(fp, member):
            if inflater.eof:
                raise CorruptArchive("deflate stream ends before the member's compressed data does")
            while True:
                out = inflater.decompress(data, OUTPUT_STEP)
                if out:
                    yield out
                data = inflater.unconsumed_tail
                # A full step may leave output pending inside the inflater even when the input is used up.
                if inflater.eof or (not data and len(out) < OUTPUT_STEP):
                    break
    except _zlib.error as err:
        raise CorruptArchive(f"deflate data is corrupt: {err}") from err
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise CorruptArchive("deflate stream is truncated or has trailing bytes")


#: Inflated steps queued between the inflating and the writing thread: memory stays a few steps.
OVERLAP_STEPS = 4


class _OverlappedSink:
    """Checksums, counts and writes inflated steps in its own thread, in order, while the caller inflates the
    next ones (ISA-L, CRC-32 and file writes release the GIL): inflate and write overlap on two cores.

    A write error stops the thread and is raised to the caller at its next `put` or at `close`; `close`
    always waits for the thread, so the caller's writer is never used by two threads at once.
    """

    def __init__(self, write: Callable[[bytes], object]) -> None:
        import queue
        import threading

        self.crc = self.lines = 0
        self.last = b"\n"
        self._write = write
        self._queue: "queue.Queue[bytes | None]" = queue.Queue(maxsize=OVERLAP_STEPS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="unzip-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (out := self._queue.get()) is not None:
            if self._error is not None:
                continue  # failed: keep draining so the producer never blocks
            try:
                self.crc = _zlib.crc32(out, self.crc)
                self.lines += out.count(b"\n")
                self.last = out[-1:]
                self._write(out)
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = err

    def put(self, out: bytes) -> None:
        if self._error is not None:
            self.close()
        self._queue.put(out)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def stream_member(fp: BinaryIO, member: Member, write: Callable[[bytes], object],
                  limits: UnzipLimits = UnzipLimits()) -> StreamStats:
    """Inflate `member` into `write`, counting, capping and verifying as the bytes go by.

    Raises before the caller commits, CorruptArchive: as soon as the output passes
    the declared size (which the caps bound), on a broken deflate stream, a size
    shortfall or a CRC mismatch.
    """
    started = time.perf_counter()
    allowed = min(member.declared_size, limits.max_uncompressed_bytes,
                  int(limits.max_ratio * max(member.compressed_size, 1)))
    total = 0
    sink = _OverlappedSink(write)
    try:
        for out in _inflated_chunks(fp, member):
            total += len(out)
            if total > allowed:
                raise CorruptArchive(f"member inflates past {allowed} bytes although it declares "
                                     f"{member.declared_size}: damaged data or a forged header (zip bomb); stopped")
            sink.put(out)
    finally:
        sink.close()  # the writer thread has stopped before the caller commits or aborts the output
    crc, lines, last = sink.crc, sink.lines, sink.last
    if total != member.declared_size:
        raise CorruptArchive(f"member inflates to {total} bytes but declares {member.declared_size}")
    if crc != member.crc32:
        raise CorruptArchive(f"CRC-32 mismatch: member data hashes to {crc:08x}, header says {member.crc32:08x}")
    if last != b"\n":
        lines += 1  # a last line without its newline
    return StreamStats(uncompressed_bytes=total, lines=lines, crc32=crc, seconds=time.perf_counter() - started)


def already_unzipped(partition: TradePartition, lake: Storage) -> UnzipResult | None:
    """The build of raw_unzipped for `partition` when it was made from the raw archive there now (else None)."""
    source_key, key = lake_key(Zone.RAW, partition), lake_key(Zone.RAW_UNZIPPED, partition)
    source = lake.info(source_key)
    source_sha256 = ((lake.read_meta(source_key) or {}) if source else {}).get("sha256")
    previous = lake.read_meta(key) or {}
    if not source_sha256 or previous.get("source_sha256") != source_sha256 or not lake.exists(key):
        return None
    return UnzipResult(status="up_to_date", key=key, source_key=source_key, source_sha256=source_sha256,
                       compressed_bytes=source.size, uncompressed_bytes=previous["uncompressed_bytes"],
                       lines=previous["lines"], seconds=0.0)


def unzip_partition(partition: TradePartition, lake: Storage, limits: UnzipLimits = UnzipLimits()) -> UnzipResult:
    """Build raw_unzipped for `partition` from its raw archive, or skip when already built from it.

    The data version is the raw archive's sha256 (its sidecar): unchanged and the
    output present -> up to date; changed -> rebuilt. The output's sidecar is
    written after the object is committed; a crash in between leaves a sidecar
    naming the previous source, which no longer matches, so the next run rebuilds
    (and the job needs no delete permission).
    """
    source_key, key = lake_key(Zone.RAW, partition), lake_key(Zone.RAW_UNZIPPED, partition)
    source = lake.info(source_key)
    source_meta = lake.read_meta(source_key) if source else None
    if source is None or not (source_meta or {}).get("sha256"):
        raise UpstreamMissing(f"{partition}: no verified raw archive at {lake.uri(source_key)}; "
                              "materialise raw/trades_zip for this partition first")
    source_sha256 = source_meta["sha256"]
    if (built := already_unzipped(partition, lake)) is not None:
        return built
    prior = (lake.read_meta(key) or {}).get("source_sha256")  # what it was built from before: "rebuilt"
    expected = csv_member_name(partition)
    with lake.open_read(source_key) as fp:
        try:
            member = locate_member(fp, source.size, expected, limits)
            with lake.writer(key, expected_size=member.declared_size) as out:
                stats = stream_member(fp, member, out.write, limits)
        except ArchiveError as err:
            raise type(err)(f"{partition}: {lake.uri(source_key)} (sha256 {source_sha256}): {err}; "
                            "nothing was written to raw_unzipped") from err
    lake.write_meta(key, {
        "source_sha256": source_sha256,
        "source_key": source_key,
        "compressed_bytes": source.size,
        "uncompressed_bytes": stats.uncompressed_bytes,
        "lines": stats.lines,
        "crc32": f"{stats.crc32:08x}",
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return UnzipResult(status="rebuilt" if prior else "built", key=key, source_key=source_key,
                       source_sha256=source_sha256, compressed_bytes=source.size,
                       uncompressed_bytes=stats.uncompressed_bytes, lines=stats.lines, seconds=stats.seconds,
                       previous_source_sha256=prior)
