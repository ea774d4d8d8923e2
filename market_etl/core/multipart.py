"""S3 multipart part sizing.

S3 limits: every part but the last is 5 MiB to 5 GiB, at most 10,000 parts.
Fixed 5 MiB parts cap an object at ~48.8 GiB, so the part size is derived
from the declared size of what is being uploaded. When the size is not known
up front, parts grow so the 10,000-part limit is never reached below 5 TiB.
"""
from __future__ import annotations

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
    whatever part size it started with (property-tested in market_etl_tests/test_multipart.py).
    """
    if parts_done and parts_done % GROWTH_INTERVAL == 0:
        return min(MAX_PART_SIZE, current * 2)
    return current
