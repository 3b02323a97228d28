"""The record-batch decoder against aiokafka's own encoder and decoder (the reference)."""

import struct

import numpy as np
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.recordbatch import COMPLETE, CORRUPT, PARTIAL_TAIL, UNSUPPORTED, decode_record_batches

ONE_MIB = 1 << 20


def batch(records, base_offset=0, compression=0, transactional=False):
    """One v2 batch from aiokafka's builder: records are (timestamp, key, value, headers)."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=compression, is_transactional=int(transactional),
                                  producer_id=7 if transactional else -1, producer_epoch=0 if transactional else -1,
                                  base_sequence=0 if transactional else -1, batch_size=ONE_MIB)
    for i, (ts, key, value, headers) in enumerate(records):
        assert b.append(i, timestamp=ts, key=key, value=value, headers=headers) is not None
    raw = bytearray(b.build())
    raw[0:8] = struct.pack(">q", base_offset)  # as the broker assigns it
    return bytes(raw)


def reference(buf):
    """(offset, timestamp, key, value) of every record, as aiokafka's consumer reads them."""
    out, records = [], MemoryRecords(buf)
    while records.has_next():
        out.extend((r.offset, r.timestamp, r.key, r.value) for r in records.next_batch())
    return out


def decoded(d):
    def part(bounds, blob, i):
        lo, hi = bounds[i]
        return None if hi < 0 else blob[lo:hi].tobytes()

    return [(int(d.offset[i]), int(d.timestamp_ms[i]), part(d.key_bounds, d.key_blob, i),
             part(d.value_bounds, d.value_blob, i)) for i in range(d.offset.shape[0])]


def test_batches_decode_as_aiokafka_reads_them_with_keys_values_and_nulls():
    first = batch([(1_000, b"o1", b'{"a":1}', [("h", b"x")]), (1_004, None, b"", []), (1_009, b"o2", None, [])],
                  base_offset=40)
    second = batch([(2_000, b"o3", b"v" * 300, [])], base_offset=43)
    d = decode_record_batches(first + second)
    assert decoded(d) == reference(first + second)
    assert (d.stopped_by, d.consumed_bytes, d.next_offset) == (COMPLETE, len(first + second), 44)


def test_a_fetch_cut_inside_a_batch_stops_before_it():
    whole = batch([(1, b"k", b"a", [])], base_offset=5)
    cut = batch([(2, b"k", b"b", [])], base_offset=6)
    for tail in (cut[:10], cut[:-1]):
        d = decode_record_batches(whole + tail)
        assert decoded(d) == reference(whole)
        assert (d.stopped_by, d.consumed_bytes, d.next_offset) == (PARTIAL_TAIL, len(whole), 6)


@pytest.mark.parametrize("kind", ["gzip", "transactional"])
def test_a_batch_it_does_not_handle_stops_the_pass_there(kind):
    plain = batch([(1, b"k", b"a", [])], base_offset=0)
    other = batch([(2, b"k", b"b", [])], base_offset=1, compression=1 if kind == "gzip" else 0,
                  transactional=kind == "transactional")
    d = decode_record_batches(plain + other + plain)
    assert decoded(d) == reference(plain)
    assert (d.stopped_by, d.consumed_bytes) == (UNSUPPORTED, len(plain))


def test_a_corrupt_batch_is_reported_and_nothing_of_it_returned():
    good = batch([(1, b"k", b"a", [])], base_offset=0)
    bad = bytearray(batch([(2, b"k", b"bbbb", [])], base_offset=1))
    bad[-3] ^= 0xFF  # a flipped byte in the value: the CRC no longer matches
    d = decode_record_batches(good + bytes(bad))
    assert decoded(d) == reference(good)
    assert (d.stopped_by, d.consumed_bytes) == (CORRUPT, len(good))


def test_a_batch_whose_count_lies_is_corrupt_even_with_a_right_crc():
    raw = bytearray(batch([(1, b"k", b"a", [])]))
    raw[57:61] = struct.pack(">i", 2**31 - 1)  # more records than the bytes could hold
    raw[17:21] = struct.pack(">I", calc_crc32c(bytes(raw[21:])))
    d = decode_record_batches(bytes(raw))
    assert d.stopped_by == CORRUPT and d.offset.shape[0] == 0


def test_log_append_time_batches_give_the_broker_time():
    raw = bytearray(batch([(1_000, b"k", b"a", []), (1_500, b"k", b"b", [])]))
    attributes = struct.unpack(">h", raw[21:23])[0] | 0x08
    raw[21:23] = struct.pack(">h", attributes)
    raw[35:43] = struct.pack(">q", 9_999)  # the broker's append time
    raw[17:21] = struct.pack(">I", calc_crc32c(bytes(raw[21:])))
    assert [ts for _, ts, _, _ in decoded(decode_record_batches(bytes(raw)))] == [9_999, 9_999]


def test_nothing_to_decode():
    d = decode_record_batches(b"")
    assert d.offset.shape == (0,) and d.stopped_by == COMPLETE and d.next_offset == -1


records_strategy = st.lists(
    st.tuples(st.integers(0, 2**41), st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=400),
              st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=8)), max_size=2)),
    min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(st.lists(records_strategy, min_size=1, max_size=4), st.integers(0, 2**40))
def test_any_uncompressed_batches_decode_as_aiokafka_reads_them(batches, base):
    raw, offset = b"", base
    for records in batches:
        raw += batch(records, base_offset=offset)
        offset += len(records)
    d = decode_record_batches(raw)
    assert decoded(d) == reference(raw)
    assert (d.stopped_by, d.next_offset) == (COMPLETE, offset)
    assert np.all(np.diff(d.offset) == 1)
