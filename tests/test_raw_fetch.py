"""Chunks of fetched records (stream.raw_fetch) without a broker: built from bytes, from records, sliced."""

from collections import namedtuple

from stream.raw_fetch import _decoded_chunk, chunk_of_records
from tests.test_recordbatch import batch

Record = namedtuple("Record", "offset timestamp key value")


def contents(chunk):
    return [(int(chunk.offset[i]), int(chunk.timestamp_ms[i]), chunk.key(i), chunk.value(i)) for i in range(len(chunk))]


def test_a_chunk_from_bytes_starts_at_the_offset_asked_for():
    raw = batch([(10, b"a", b"x1", []), (11, None, b"x22", []), (12, b"c", None, []), (13, b"d", b"", [])],
                base_offset=100)
    chunk, consumed, next_offset = _decoded_chunk(raw, 102)
    assert contents(chunk) == [(102, 12, b"c", None), (103, 13, b"d", b"")]
    assert (consumed, next_offset) == (len(raw), 104)
    assert chunk.value_bounds.tolist() == [0, 0, 0]  # a null and an empty value hold no bytes


def test_a_chunk_from_records_keeps_nulls_apart_from_empties():
    records = [Record(5, 50, None, b"v"), Record(6, 60, b"k", None), Record(7, 70, b"", b"")]
    assert contents(chunk_of_records(records)) == [(5, 50, None, b"v"), (6, 60, b"k", None), (7, 70, b"", b"")]


def test_slices_cover_the_chunk_in_order_with_their_own_bounds():
    records = [Record(i, 1_000 + i, f"k{i}".encode(), (b"v" * (i % 5)) if i % 4 else None) for i in range(23)]
    chunk = chunk_of_records(records)
    pieces = list(chunk.slices(5))
    assert [len(p) for p in pieces] == [5, 5, 5, 5, 3]
    assert [row for p in pieces for row in contents(p)] == contents(chunk)
    assert all(p.value_bounds[0] == 0 and p.value_bounds[-1] == p.value_blob.shape[0] for p in pieces)
    assert list(chunk.slices(23)) == [chunk]
