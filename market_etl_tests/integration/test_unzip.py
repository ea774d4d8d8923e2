"""raw_unzipped/trades_csv: RELIABILITY cases 9-15 on the local disk and on moto's S3 server.

Archives are real zips: small ones built here with zipfile (patched where a case needs a hostile
header), bigger ones from the mirror generator. The stage runs in-process through its core
(`unzip_partition`), as a real subprocess (memory, SIGKILL, disk limit) and through a real Dagster
run over Pipes. Case 13 (part-size arithmetic) is in test_multipart.py.
"""
from __future__ import annotations

import hashlib
import io
import resource
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_etl.core.binance import csv_member_name
from market_etl.core.keys import TradePartition, UpstreamMissing, Zone, lake_key
from market_etl.core.unzip import (
    ArchiveError,
    ArchiveTooLarge,
    CorruptArchive,
    UnsafeArchive,
    UnzipLimits,
    locate_member,
    stream_member,
    unzip_partition,
)
from market_etl.definitions import build_definitions
from market_etl.defs.keys import RAW_UNZIPPED_TRADES_CSV
from market_etl.lake import Lake, LocalLake, S3Lake
from market_etl_devtools.mirror.generate import GeneratedFile, generate_month
from market_etl.settings import Settings

PARTITION = TradePartition("BTCUSDT", "2025-07")
NAME = csv_member_name(PARTITION)
RAW = lake_key(Zone.RAW, PARTITION)
OUT = lake_key(Zone.RAW_UNZIPPED, PARTITION)
MiB = 1024**2
UNZIPPED = RAW_UNZIPPED_TRADES_CSV


# ----------------------------------------------------------------------------- helpers

def csv_bytes(rows: int, first_id: int = 4_359_935_386, newline_at_end: bool = True) -> bytes:
    """Headerless Binance spot rows (microsecond times), deterministic."""
    lines = [
        f"{first_id + i},{93576 + (i * 37) % 1000 / 100:.8f},{(i % 97 + 1) / 1e5:.8f},"
        f"{(93576 + (i * 37) % 1000 / 100) * (i % 97 + 1) / 1e5:.8f},{1751328000000000 + i * 86_411},"
        f"{'True' if i % 3 else 'False'},True"
        for i in range(rows)
    ]
    return ("\n".join(lines) + ("\n" if newline_at_end else "")).encode()


class _Unseekable(io.RawIOBase):
    """What a streaming zip writer sees: zipfile then writes data descriptors after each member."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


def make_zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED, streamed: bool = False) -> bytes:
    target = _Unseekable() if streamed else io.BytesIO()
    with zipfile.ZipFile(target, "w", method) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2025, 8, 1, 0, 0, 0)), data, compress_type=method)
    return bytes(target.data) if streamed else target.getvalue()


def as_zip64(archive: bytes) -> bytes:
    """Mark the end record's counts and sizes as "see the zip64 record" (0xFFFF..), as archives over 4 GiB do.

    Needs an archive written while zipfile.ZIP64_LIMIT is patched low, so that the zip64 records exist.
    """
    data = bytearray(archive)
    eocd = data.rindex(b"PK\x05\x06")
    assert data.rfind(b"PK\x06\x06") != -1, "no zip64 end record: write the archive with ZIP64_LIMIT patched"
    struct.pack_into("<HHLL", data, eocd + 8, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return bytes(data)


def patch_headers(archive: bytes, *, name: bytes | None = None, local_name: bytes | None = None,
                  flags: int | None = None, declared_size: int | None = None) -> bytes:
    """Rewrite fields of a one-member zip in its local header and/or central directory (same-length names)."""
    data = bytearray(archive)
    local, central = 0, data.rindex(b"PK\x01\x02")
    assert data[local:local + 4] == b"PK\x03\x04"
    name_len = struct.unpack_from("<H", data, local + 26)[0]
    if flags is not None:
        struct.pack_into("<H", data, local + 6, flags)
        struct.pack_into("<H", data, central + 8, flags)
    if declared_size is not None:
        struct.pack_into("<L", data, local + 22, declared_size)
        struct.pack_into("<L", data, central + 24, declared_size)
    for offset, new in ((local + 30, local_name or name), (central + 46, name)):
        if new is not None:
            assert len(new) == name_len
            data[offset:offset + name_len] = new
    return bytes(data)


def put_raw(lake: Lake, archive: bytes) -> str:
    """The raw zone as raw/trades_zip leaves it: the archive and its sha256 sidecar."""
    sha256 = hashlib.sha256(archive).hexdigest()
    lake.put_bytes(RAW, archive)
    lake.write_meta(RAW, {"sha256": sha256})
    return sha256


def put_raw_file(lake: Lake, generated: GeneratedFile) -> None:
    with open(generated.zip_path, "rb") as src, lake.writer(RAW) as out:
        for block in iter(lambda: src.read(MiB), b""):
            out.write(block)
    lake.write_meta(RAW, {"sha256": generated.sha256})


def assert_nothing_visible(lake: Lake) -> None:
    assert list(lake.list(lake_key(Zone.RAW_UNZIPPED))) == []
    assert lake.pending_writes(lake_key(Zone.RAW_UNZIPPED)) == []
    assert lake.read_meta(OUT) is None


def output_crc(lake: Lake) -> int:
    crc = 0
    with lake.open_read(OUT) as f:
        for block in iter(lambda: f.read(MiB), b""):
            crc = zlib.crc32(block, crc)
    return crc


def member_crc(generated: GeneratedFile) -> int:
    with zipfile.ZipFile(generated.zip_path) as zf:
        return zf.getinfo(NAME).CRC


def stage_command(lake: Lake, moto_endpoint: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "market_etl.stages.unzip", "--symbol", PARTITION.symbol,
               "--month", PARTITION.month, "--lake", lake.url]
    return command + (["--s3-endpoint-url", moto_endpoint] if moto_endpoint else [])


def materialize_unzip(lake_root, instance):
    defs = build_definitions(Settings.from_env({"MARKET_ETL_LAKE": str(lake_root)}))
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(partition_key=PARTITION.dagster_key(), instance=instance,
                                  asset_selection=[UNZIPPED], raise_on_error=False)


def materialization_metadata(result) -> dict:
    assert result.success
    [mat] = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    return {k: v.value for k, v in mat.metadata.items()}


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> GeneratedFile:
    """~43 MB of CSV (~12 MB zipped): six 8 MiB parts on S3."""
    return generate_month(tmp_path_factory.mktemp("medium"), "BTCUSDT", "2025-07", trades_per_day=18_000, seed=5)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> GeneratedFile:
    """~310 MB of CSV: far more than the stage may hold in memory."""
    return generate_month(tmp_path_factory.mktemp("large"), "BTCUSDT", "2025-07", trades_per_day=130_000, seed=6)


# ----------------------------------------------------------------------------- the happy path and idempotency

def test_streams_the_member_into_raw_unzipped(any_lake):
    data = csv_bytes(5000)
    archive = make_zip([(NAME, data)])
    sha256 = put_raw(any_lake, archive)

    result = unzip_partition(PARTITION, any_lake)

    assert any_lake.get_bytes(OUT) == data
    assert (result.status, result.lines, result.uncompressed_bytes, result.compressed_bytes) == \
        ("built", 5000, len(data), len(archive))
    assert result.source_sha256 == sha256 and result.inflate == "isal"
    meta = any_lake.read_meta(OUT)
    assert meta["source_sha256"] == sha256 and meta["lines"] == 5000 and meta["crc32"] == f"{zlib.crc32(data):08x}"
    assert any_lake.pending_writes() == []


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
@pytest.mark.parametrize("rows,newline_at_end,lines", [(3, True, 3), (3, False, 3), (0, False, 0)])
def test_counts_lines_with_or_without_a_final_newline(local_lake, method, rows, newline_at_end, lines):
    data = csv_bytes(rows, newline_at_end=newline_at_end) if rows else b""
    put_raw(local_lake, make_zip([(NAME, data)], method))
    result = unzip_partition(PARTITION, local_lake)
    assert local_lake.get_bytes(OUT) == data and result.lines == lines


def test_reads_archives_written_by_streaming_zip_writers(local_lake):
    """Java's ZipOutputStream and other streaming writers put sizes and CRC after the data (flag bit 3)."""
    data = csv_bytes(4000)
    archive = make_zip([(NAME, data)], streamed=True)
    assert struct.unpack_from("<H", archive, 6)[0] & 0x08  # really a data-descriptor archive
    put_raw(local_lake, archive)
    assert unzip_partition(PARTITION, local_lake).lines == 4000
    assert local_lake.get_bytes(OUT) == data


@pytest.mark.parametrize("extra_members,error", [(0, None), (1, "2 members")])
def test_reads_zip64_end_records(local_lake, monkeypatch, extra_members, error):
    """Archives past 4 GiB keep their directory's place and size in zip64 records; counted there too."""
    data = csv_bytes(1000)
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 64)
    archive = as_zip64(make_zip([(NAME, data)] + [("notes.txt", b"hi")] * extra_members))
    monkeypatch.undo()
    put_raw(local_lake, archive)
    if error:
        with pytest.raises(UnsafeArchive, match=error):
            unzip_partition(PARTITION, local_lake)
    else:
        assert unzip_partition(PARTITION, local_lake).lines == 1000
        assert local_lake.get_bytes(OUT) == data


def test_skips_an_unchanged_archive_and_rebuilds_a_republished_one(any_lake):
    first = csv_bytes(2000)
    old_sha = put_raw(any_lake, make_zip([(NAME, first)]))
    assert unzip_partition(PARTITION, any_lake).status == "built"

    # Same data version: the stage must not even read the archive (garbage bytes under the same sha256).
    any_lake.put_bytes(RAW, b"not read when up to date")
    skipped = unzip_partition(PARTITION, any_lake)
    assert (skipped.status, skipped.lines, skipped.source_sha256) == ("up_to_date", 2000, old_sha)
    assert any_lake.get_bytes(OUT) == first

    republished = csv_bytes(2500)
    new_sha = put_raw(any_lake, make_zip([(NAME, republished)]))
    rebuilt = unzip_partition(PARTITION, any_lake)
    assert (rebuilt.status, rebuilt.source_sha256, rebuilt.previous_source_sha256) == ("rebuilt", new_sha, old_sha)
    assert any_lake.get_bytes(OUT) == republished
    assert any_lake.read_meta(OUT)["source_sha256"] == new_sha

    any_lake.delete(OUT)  # output gone, sidecar left: rebuilt, never "up to date"
    assert unzip_partition(PARTITION, any_lake).status == "rebuilt"
    assert any_lake.get_bytes(OUT) == republished


def test_missing_upstream_says_what_to_do(local_lake):
    with pytest.raises(UpstreamMissing, match="materialise raw/trades_zip"):
        unzip_partition(PARTITION, local_lake)
    local_lake.put_bytes(RAW, make_zip([(NAME, b"1\n")]))  # archive without its data-version sidecar
    with pytest.raises(UpstreamMissing):
        unzip_partition(PARTITION, local_lake)
    assert_nothing_visible(local_lake)


# ----------------------------------------------------------------------------- case 9: corrupt archives

def _flip_deflate_bytes() -> bytes:
    archive = bytearray(make_zip([(NAME, csv_bytes(20_000))]))
    middle = len(archive) // 2
    archive[middle:middle + 64] = bytes(b ^ 0x5A for b in archive[middle:middle + 64])
    return bytes(archive)


def _stored_with_a_changed_byte() -> bytes:
    archive = bytearray(make_zip([(NAME, csv_bytes(100))], zipfile.ZIP_STORED))
    archive[200] ^= 0x01  # inside the member data: only the CRC can tell
    return bytes(archive)


CORRUPT = {
    "damaged deflate stream": (_flip_deflate_bytes, r"corrupt|CRC-32 mismatch|inflates"),
    "CRC mismatch": (_stored_with_a_changed_byte, "CRC-32 mismatch"),
    "truncated archive": (lambda: make_zip([(NAME, csv_bytes(5000))])[:-300], "not a zip|truncated|damaged"),
    "not a zip at all": (lambda: b"<html>503 Service Unavailable</html>" * 10, "not a zip archive"),
}


@pytest.mark.parametrize("damage", CORRUPT)
def test_corrupt_archive_whose_checksum_matched_fails_clearly(any_lake, damage):
    """Case 9 (#24): the raw zone's sha256 describes these very bytes, yet they do not unzip."""
    make, message = CORRUPT[damage]
    put_raw(any_lake, make())
    with pytest.raises(CorruptArchive, match=message) as failure:
        unzip_partition(PARTITION, any_lake)
    assert "BTCUSDT/2025-07" in str(failure.value) and "nothing was written" in str(failure.value)
    assert_nothing_visible(any_lake)


SMALL_CSV = csv_bytes(300)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]), data=st.data())
def test_any_damage_fails_as_a_bad_archive_or_changes_nothing(method, data):
    """Case 9 as a property: flip bytes anywhere (headers and directory most often) or cut the archive
    short, and the stage either raises an ArchiveError or yields exactly the original CSV: never another
    exception (a crash without a clear message), never different bytes."""
    archive = bytearray(make_zip([(NAME, SMALL_CSV)], method))
    size = len(archive)
    if data.draw(st.booleans(), label="cut short"):
        archive = archive[:data.draw(st.integers(0, size - 1), label="length")]
    else:
        structure = st.one_of(st.integers(0, 75), st.integers(size - 140, size - 1), st.integers(0, size - 1))
        for position in data.draw(st.lists(structure, min_size=1, max_size=3), label="positions"):
            archive[position] ^= data.draw(st.integers(1, 255), label="xor")
    out = io.BytesIO()
    fp = io.BytesIO(bytes(archive))
    try:
        stream_member(fp, locate_member(fp, len(archive), NAME), out.write)
    except ArchiveError:
        return
    assert out.getvalue() == SMALL_CSV


def test_a_member_name_flagged_utf8_that_is_not_is_a_damaged_archive(any_lake):
    """Found by the property above: one flipped flag bit (0x800, "name is UTF-8") over a name byte that is not."""
    archive = make_zip([(NAME, csv_bytes(10))])
    put_raw(any_lake, patch_headers(archive, name=b"\xc2" + NAME.encode()[1:], flags=0x800))
    with pytest.raises(CorruptArchive, match="flagged UTF-8"):
        unzip_partition(PARTITION, any_lake)
    assert_nothing_visible(any_lake)


# ----------------------------------------------------------------------------- case 10: unexpected members

def _renamed(name: bytes, *, local_only: bool = False) -> bytes:
    archive = make_zip([(NAME, csv_bytes(10))])
    return patch_headers(archive, local_name=name) if local_only else patch_headers(archive, name=name)


UNEXPECTED = {
    "two members": (lambda: make_zip([(NAME, csv_bytes(10)), ("notes.txt", b"hi")]), "2 members"),
    "parent directory": (lambda: make_zip([("../x.csv", csv_bytes(10))]), "path components"),
    "sub-directory": (lambda: make_zip([(f"sub/{NAME}", csv_bytes(10))]), "path components"),
    "backslash path": (lambda: _renamed(b"..\\" + NAME.encode()[3:]), "path components"),
    "another symbol's file": (lambda: make_zip([("ETHUSDT-trades-2025-07.csv", csv_bytes(10))]), "unexpected member"),
    "another month's file": (lambda: make_zip([("BTCUSDT-trades-2025-08.csv", csv_bytes(10))]), "unexpected member"),
    "local header disagrees": (lambda: _renamed(b"../" + NAME.encode()[3:], local_only=True), "path components"),
    "encrypted": (lambda: patch_headers(make_zip([(NAME, csv_bytes(10))]), flags=0x1), "encrypted"),
    "bzip2 compression": (lambda: make_zip([(NAME, csv_bytes(10))], zipfile.ZIP_BZIP2), "method 12"),
}


@pytest.mark.parametrize("case", UNEXPECTED)
def test_unexpected_members_are_rejected(any_lake, case):
    """Case 10: the output key comes from the partition only; a member name never reaches a path."""
    make, message = UNEXPECTED[case]
    put_raw(any_lake, make())
    with pytest.raises(UnsafeArchive, match=message):
        unzip_partition(PARTITION, any_lake)
    assert_nothing_visible(any_lake)
    assert [o.key for o in any_lake.list("")] == [RAW]


# ----------------------------------------------------------------------------- case 11: zip bombs

def test_bomb_declaring_a_huge_ratio_is_refused_before_inflating(any_lake):
    put_raw(any_lake, make_zip([(NAME, bytes(64 * MiB))]))  # 64 MiB of zeros deflate ~1000:1
    with pytest.raises(ArchiveTooLarge, match="compression ratio"):
        unzip_partition(PARTITION, any_lake)
    assert_nothing_visible(any_lake)


def test_size_cap_refuses_a_member_over_the_limit(local_lake):
    put_raw(local_lake, make_zip([(NAME, csv_bytes(100))]))
    with pytest.raises(ArchiveTooLarge, match="over the cap of 1000"):
        unzip_partition(PARTITION, local_lake, UnzipLimits(max_uncompressed_bytes=1000))
    assert_nothing_visible(local_lake)


def test_bomb_lying_about_its_size_is_stopped_in_bounded_memory(any_lake):
    """The header claims 1 MiB (a plausible ratio); the stream would inflate to 64 MiB in one call if asked.

    Bytes are counted as they stream and output is bounded per step, so the stage stops just past the
    declared size, and never holds more than a few MiB (Python allocations, traced).
    """
    bomb = make_zip([(NAME, bytes(64 * MiB))])
    put_raw(any_lake, patch_headers(bomb, declared_size=MiB))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptArchive, match="inflates past"):
            unzip_partition(PARTITION, any_lake)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    assert_nothing_visible(any_lake)


# ----------------------------------------------------------------------------- case 12: failure in the middle of the upload

def test_failure_on_upload_part_n_aborts_the_multipart_upload(s3_lake, medium):
    """Case 12 on S3: the connection breaks on UploadPart 3 (parts 1 and 2 are stored by moto)."""
    put_raw_file(s3_lake, medium)
    parts_sent: list[int] = []

    def break_on_part_3(params, **_):
        parts_sent.append(params["PartNumber"])
        if params["PartNumber"] == 3:
            raise ConnectionResetError("injected: connection reset while sending UploadPart 3")

    s3_lake.client.meta.events.register("before-parameter-build.s3.UploadPart", break_on_part_3)
    with pytest.raises(ConnectionResetError):
        unzip_partition(PARTITION, s3_lake)
    assert parts_sent == [1, 2, 3]
    assert_nothing_visible(s3_lake)
    assert s3_lake.pending_writes() == []  # the upload was aborted, not just left to the lifecycle rule

    s3_lake.client.meta.events.unregister("before-parameter-build.s3.UploadPart", break_on_part_3)
    result = unzip_partition(PARTITION, s3_lake)
    assert (result.status, result.lines) == ("built", medium.rows)
    assert output_crc(s3_lake) == member_crc(medium)


def test_disk_limit_hit_mid_write_removes_the_temporary_file(local_lake, medium):
    """Case 12 on the local disk: the stage process may not write files over 8 MiB (RLIMIT_FSIZE), so the
    write that crosses it fails with EFBIG (Python ignores SIGXFSZ) like a full disk would."""
    put_raw_file(local_lake, medium)

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * MiB, 8 * MiB))

    proc = subprocess.run(stage_command(local_lake), preexec_fn=limit_file_size, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "File too large" in proc.stderr
    assert_nothing_visible(local_lake)


# ----------------------------------------------------------------------------- case 14: memory

def test_peak_memory_of_the_stage_is_bounded_whatever_the_member_size(tmp_path, large, record_property):
    """Case 14, through real Dagster runs (PipesSubprocessClient), as in production.

    Measured: the stage process's own peak resident set (VmHWM, the kernel's high-water mark of its
    address space since exec, interpreter and imports included), which the stage reports as
    `peak_rss_mb`. The baseline is the same stage on a 3-line archive; the ~310 MB member may add at
    most 64 MiB on top (its buffers are ~1 MiB), and the whole process must stay under 64 MiB.
    """
    tiny_lake, big_lake = LocalLake(tmp_path / "tiny"), LocalLake(tmp_path / "big")
    put_raw(tiny_lake, make_zip([(NAME, csv_bytes(3))]))
    put_raw_file(big_lake, large)
    with dg.instance_for_test() as instance:
        baseline, big = (materialization_metadata(materialize_unzip(lake.root, instance)) for lake in (tiny_lake, big_lake))

    assert big["uncompressed_bytes"] == big_lake.info(OUT).size == large.csv_bytes
    assert big["lines"] == large.rows
    assert output_crc(big_lake) == member_crc(large)
    peak, floor = big["peak_rss_mb"] * 1e6, baseline["peak_rss_mb"] * 1e6
    record_property("peak_rss_mb", big["peak_rss_mb"])
    record_property("baseline_rss_mb", baseline["peak_rss_mb"])
    print(f"\nunzip stage peak RSS: {peak / MiB:.1f} MiB for {large.csv_bytes / 1e6:.0f} MB of CSV, "
          f"{floor / MiB:.1f} MiB for 3 lines: +{(peak - floor) / MiB:.1f} MiB")
    assert 10 * MiB < floor <= peak  # a plausible interpreter, not the Dagster process that started it
    assert large.csv_bytes > 4 * 64 * MiB  # holding the member would blow the bound several times over
    assert peak - floor < 64 * MiB
    assert peak < 64 * MiB  # the target for the whole stage process


# ----------------------------------------------------------------------------- case 15: killed mid-upload

def _kill_when(proc: subprocess.Popen, condition, what: str, signum: int = signal.SIGKILL,
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the stage {'ended' if proc.returncode is not None else 'timed out'} before {what}")
        time.sleep(0.005)
    proc.send_signal(signum)


def _stage_in_flight(lake: Lake):
    """True once the stage has an unfinished write under raw_unzipped (a temp file or a multipart upload)."""
    return lambda: bool(lake.pending_writes(lake_key(Zone.RAW_UNZIPPED)))


def test_stopped_with_sigterm_mid_write_leaves_nothing_at_all(any_lake, moto_endpoint, request):
    """Dagster cancelling a run and Glue timing a job out send SIGTERM: the stage aborts its write on the way out,
    so not even a pending upload or temporary file remains."""
    on_s3 = isinstance(any_lake, S3Lake)
    # Local disk takes ~43 MB in under 0.1 s, a window a loaded machine can miss: there the signal waits for
    # 32 MiB of ~310 MB, like the SIGKILL test below. S3's six parts through moto leave a wide window already.
    archive = request.getfixturevalue("medium" if on_s3 else "large")
    put_raw_file(any_lake, archive)
    proc = subprocess.Popen(stage_command(any_lake, moto_endpoint if on_s3 else None), stderr=subprocess.DEVNULL)
    _kill_when(proc, _stage_in_flight(any_lake) if on_s3 else _temp_file_past(any_lake, 32 * MiB),
               "its write started", signal.SIGTERM)
    assert proc.wait() == 128 + signal.SIGTERM
    assert_nothing_visible(any_lake)


def _temp_file_past(lake: LocalLake, size: int):
    """True once the stage's temporary file under raw_unzipped holds more than `size` bytes."""
    def past() -> bool:
        temps = lake.pending_writes(lake_key(Zone.RAW_UNZIPPED))
        try:
            return bool(temps) and lake.path(temps[0]).stat().st_size > size
        except FileNotFoundError:  # renamed into place between the listing and the stat
            return False
    return past


class _Stopped(Exception):
    pass


def _raise_stopped(signum, frame):
    raise _Stopped(signum)


def test_a_stop_while_s3_creates_an_upload_lands_after_its_id_is_known():
    """The race behind the test above: S3 has created the multipart upload, its id is not back yet, and SIGTERM
    arrives. Raised there, it would leave an upload nobody can abort; the writer defers it to the end of the
    call (`_stop_signals_deferred` around create_multipart_upload), then the handler runs as it would have."""
    from market_etl.lake.s3 import _stop_signals_deferred

    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    got_to_the_end = False
    try:
        with pytest.raises(_Stopped):
            with _stop_signals_deferred():
                signal.raise_signal(signal.SIGTERM)
                time.sleep(0.05)  # an undeferred handler has run by now
                got_to_the_end = True
        assert got_to_the_end
        assert signal.getsignal(signal.SIGTERM) is _raise_stopped  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_killed_mid_write_on_local_disk_rerun_gives_one_complete_file(local_lake, large):
    put_raw_file(local_lake, large)
    proc = subprocess.Popen(stage_command(local_lake), stderr=subprocess.DEVNULL)
    _kill_when(proc, _temp_file_past(local_lake, 32 * MiB), "its temporary file reached 32 MiB")
    assert proc.wait() == -signal.SIGKILL

    assert list(local_lake.list(lake_key(Zone.RAW_UNZIPPED))) == [] and local_lake.read_meta(OUT) is None
    [leftover] = local_lake.pending_writes(lake_key(Zone.RAW_UNZIPPED))  # hidden from every reader (dot file)

    result = unzip_partition(PARTITION, local_lake)
    assert (result.status, result.lines, result.uncompressed_bytes) == ("built", large.rows, large.csv_bytes)
    assert [o.key for o in local_lake.list(lake_key(Zone.RAW_UNZIPPED))] == [OUT]
    assert output_crc(local_lake) == member_crc(large)
    assert local_lake.pending_writes(lake_key(Zone.RAW_UNZIPPED)) == [leftover]


def test_killed_mid_upload_on_s3_rerun_gives_one_complete_object(s3_lake, moto_endpoint, medium):
    """The killed process cannot abort its multipart upload: it stays pending, invisible to readers, until the
    bucket's AbortIncompleteMultipartUpload lifecycle rule removes it (terraform/). The re-run is unaffected."""
    put_raw_file(s3_lake, medium)
    proc = subprocess.Popen(stage_command(s3_lake, moto_endpoint), stderr=subprocess.DEVNULL)
    _kill_when(proc, _stage_in_flight(s3_lake), "its multipart upload started")
    assert proc.wait() == -signal.SIGKILL

    assert list(s3_lake.list(lake_key(Zone.RAW_UNZIPPED))) == [] and s3_lake.read_meta(OUT) is None
    assert s3_lake.pending_writes() == [OUT]

    result = unzip_partition(PARTITION, s3_lake)
    assert (result.status, result.lines, result.uncompressed_bytes) == ("built", medium.rows, medium.csv_bytes)
    assert [o.key for o in s3_lake.list(lake_key(Zone.RAW_UNZIPPED))] == [OUT]
    assert output_crc(s3_lake) == member_crc(medium)


# ----------------------------------------------------------------------------- the asset, through Dagster and Pipes

def test_asset_reports_its_metadata_and_data_version_through_pipes(tmp_path):
    lake = LocalLake(tmp_path / "lake")
    data = csv_bytes(3000)
    sha256 = put_raw(lake, make_zip([(NAME, data)]))
    with dg.instance_for_test() as instance:
        result = materialize_unzip(lake.root, instance)
        assert result.success
        [mat] = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
        meta = {k: v.value for k, v in mat.metadata.items()}
        assert meta["status"] == "built" and meta["lines"] == 3000 and meta["uncompressed_bytes"] == len(data)
        assert meta["source_sha256"] == sha256 and mat.tags["dagster/data_version"] == sha256
        for field in ("compressed_bytes", "seconds", "mb_per_s", "peak_rss_mb", "lake_uri", "inflate"):
            assert field in meta
        assert 10 < meta["peak_rss_mb"] < 100  # the stage process itself, not the run worker that started it
        assert mat.partition == PARTITION.dagster_key()

        again = materialize_unzip(lake.root, instance)
        [mat2] = [e.event_specific_data.materialization for e in again.get_asset_materialization_events()]
        assert mat2.metadata["status"].value == "up_to_date" and mat2.tags["dagster/data_version"] == sha256
        assert mat2.metadata["dagster/row_count"].value == 3000 and mat2.metadata["lake_uri"] == mat.metadata["lake_uri"]
        # Decided in the run's own process: no stage was launched for an unchanged archive.
        logs = [r.user_message for r in instance.all_logs(again.run_id)]
        assert not any(m.startswith("stage unzip:") for m in logs) and any("no stage launched" in m for m in logs)


def test_asset_failure_shows_the_stage_error(tmp_path):
    lake = LocalLake(tmp_path / "lake")
    put_raw(lake, make_zip([("../evil.csv", b"1\n")]))
    with dg.instance_for_test() as instance:
        result = materialize_unzip(lake.root, instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "path components" in str(failure.event_specific_data.error)
    assert_nothing_visible(lake)
