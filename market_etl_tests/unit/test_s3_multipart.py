"""Case 13: S3 part-size arithmetic, as a property over every size S3 allows.

`cut_into_parts` replays the S3 writer's rule (`market_etl.lake.s3._S3Writer.write/_commit`): full parts
of the current part size are flushed as the buffer fills, the part size may grow after each part
(`next_part_size`), and the remainder becomes the last part; an upload smaller than one part is a
single PUT.
"""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from market_etl.lake.s3 import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    ObjectTooLarge,
    next_part_size,
    part_size_for,
)

GiB, TiB = 1024**3, 1024**4
sizes = st.integers(min_value=0, max_value=MAX_OBJECT_SIZE)
preferred_sizes = st.integers(min_value=1, max_value=256 * 1024**2)


def cut_into_parts(total: int, declared: int | None, preferred: int) -> list[int]:
    part_size = part_size_for(declared, preferred)
    if total < part_size:
        return [total]  # a single PUT
    parts: list[int] = []
    remaining = total
    while remaining >= part_size:
        parts.append(part_size)
        remaining -= part_size
        assert len(parts) <= MAX_PARTS, f"more than {MAX_PARTS} parts for {total} bytes (declared {declared})"
        part_size = next_part_size(part_size, len(parts))
    if remaining:
        parts.append(remaining)
    return parts


def assert_valid_upload(parts: list[int], total: int) -> None:
    assert sum(parts) == total
    assert len(parts) <= MAX_PARTS
    assert all(MIN_PART_SIZE <= p <= MAX_PART_SIZE for p in parts[:-1])
    assert parts[-1] <= MAX_PART_SIZE


@settings(max_examples=300, deadline=None)
@given(total=sizes, preferred=preferred_sizes)
@example(total=MAX_OBJECT_SIZE, preferred=8 * 1024**2)
@example(total=10_000 * MIN_PART_SIZE + 1, preferred=MIN_PART_SIZE)
def test_declared_size_is_exact(total, preferred):
    assert_valid_upload(cut_into_parts(total, total, preferred), total)


@settings(max_examples=300, deadline=None)
@given(total=sizes, preferred=preferred_sizes)
@example(total=MAX_OBJECT_SIZE, preferred=MIN_PART_SIZE)
@example(total=MAX_OBJECT_SIZE, preferred=1)
def test_size_unknown_up_front(total, preferred):
    assert_valid_upload(cut_into_parts(total, None, preferred), total)


@settings(max_examples=300, deadline=None)
@given(declared=sizes, total=sizes, preferred=preferred_sizes)
@example(declared=0, total=MAX_OBJECT_SIZE, preferred=MIN_PART_SIZE)
def test_declared_size_is_wrong(declared, total, preferred):
    """A header may under- or over-declare (the unzip stage stops at the declared size; other writers may not)."""
    assert_valid_upload(cut_into_parts(total, declared, preferred), total)


def test_sizes_beyond_s3_are_refused():
    with pytest.raises(ObjectTooLarge):
        part_size_for(MAX_OBJECT_SIZE + 1)
    with pytest.raises(ValueError):
        part_size_for(-1)


def test_parts_follow_the_declared_size():
    """A 2.3 GB month uses the default 8 MiB parts; a 100 GiB one needs bigger parts to stay under 10,000."""
    assert part_size_for(2_300_000_000) == 8 * 1024**2
    assert len(cut_into_parts(100 * GiB, 100 * GiB, 8 * 1024**2)) <= MAX_PARTS
    assert part_size_for(100 * GiB) > 8 * 1024**2
