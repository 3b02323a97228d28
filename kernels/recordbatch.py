"""Kafka record batches (message format v2) decoded straight from a fetch response's bytes.

aiokafka turns every record of a fetch into Python objects (a C record, then
a ``ConsumerRecord``): about 3 microseconds a record, a third of what a worker
spends on a fix at full speed, only for stage 1 to join the values back into
one buffer for its JSON scanner. Here one pass over the partition's bytes
checks each batch (CRC-32C, as the Java client and aiokafka do) and copies the
values (and keys, for dead letters) into contiguous buffers with their bounds,
with each record's offset and timestamp.

Only what stage 1 reads is decoded; a batch this kernel does not handle
(compressed, a control or transactional batch, an older magic, a bad CRC)
stops the pass there, and :func:`decode_record_batches` says where, so the
caller can hand the rest to aiokafka. A fetch may end with a partial batch
(the broker cuts at its byte limit): that is not an error, the pass stops
before it.

Layout (big-endian), from Kafka's ``DefaultRecordBatch``: base offset (8),
length (4), leader epoch (4), magic (1), CRC (4) over everything after it,
attributes (2), last offset delta (4), base timestamp (8), max timestamp (8),
producer id (8), producer epoch (2), base sequence (4), record count (4); then
each record: length, attributes (1), timestamp delta, offset delta, key
length, key, value length, value, header count, headers (zig-zag varints).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS

HEADER_BYTES = 61
# Why a pass stopped (``stopped_by``).
COMPLETE = 0  # every byte decoded
PARTIAL_TAIL = 1  # the rest is an incomplete batch (a fetch cut at its size limit): fetch it again
UNSUPPORTED = 2  # compressed, control, transactional or not magic 2: aiokafka decodes the rest
CORRUPT = 3  # bad CRC or a record that does not fit its batch

_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20


def _crc32c_table() -> np.ndarray:
    table = np.zeros(256, np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table[i] = c
    return table


_CRC32C = _crc32c_table()


@njit(**JIT_OPTIONS)
def _crc32c(buf, lo, hi, table):
    c = np.uint32(0xFFFFFFFF)
    for i in range(lo, hi):
        c = table[(c ^ buf[i]) & 0xFF] ^ (c >> np.uint32(8))
    return c ^ np.uint32(0xFFFFFFFF)


@njit(**JIT_OPTIONS)
def _int(buf, at, width):
    v = np.int64(0)
    for i in range(width):
        v = (v << 8) | buf[at + i]
    # Two's complement for the signed fields narrower than 64 bits.
    if width < 8 and v >= np.int64(1) << (8 * width - 1):
        v -= np.int64(1) << (8 * width)
    return v


@njit(**JIT_OPTIONS)
def _varint(buf, at, end):
    """(zig-zag decoded value, next position), or (0, -1) when it runs past ``end`` or over 10 bytes."""
    raw = np.uint64(0)
    shift = 0
    while at < end and shift < 64:
        b = buf[at]
        at += 1
        raw |= np.uint64(b & 0x7F) << np.uint64(shift)
        if b < 0x80:
            return np.int64(raw >> np.uint64(1)) ^ -np.int64(raw & np.uint64(1)), at
        shift += 7
    return np.int64(0), -1


_MIN_RECORD_BYTES = 7  # length, attributes, timestamp delta, offset delta, key length, value length, headers


@njit(**JIT_OPTIONS)
def _most_records(buf, at, end):
    """The record count of the batch at ``at``, or -1 if it cannot be right (more than its bytes can hold)."""
    count = _int(buf, at + 57, 4)
    if count < 0 or count > (end - at - HEADER_BYTES) // _MIN_RECORD_BYTES:
        return -1
    return count


@njit(**JIT_OPTIONS)
def _count(buf):
    """Records in the whole batches at the start of ``buf``, as their headers say (at most what fits)."""
    n = 0
    at = 0
    size = buf.shape[0]
    while at + HEADER_BYTES <= size:
        end = at + 12 + _int(buf, at + 8, 4)
        if end < at + HEADER_BYTES or end > size:
            break
        n += max(_most_records(buf, at, end), 0)
        at = end
    return n


@njit(**JIT_OPTIONS)
def _field(buf, pos, record_end, bounds, n, blob, filled):
    """Copy a length-prefixed field (key or value) of record ``n`` into ``blob``; (next position, bytes in
    ``blob``), position -1 if it does not fit the record. A null field (length -1) gets end -1."""
    length, pos = _varint(buf, pos, record_end)
    # Compared as a difference: a hostile length near 2**63 must not wrap around.
    if pos < 0 or length > record_end - pos:
        return -1, filled
    bounds[n, 0] = filled
    if length < 0:
        bounds[n, 1] = -1
        return pos, filled
    blob[filled:filled + length] = buf[pos:pos + length]
    bounds[n, 1] = filled + length
    return pos + length, filled + length


@njit(**JIT_OPTIONS)
def _record(buf, pos, end, n, key_bounds, key_blob, n_key, value_bounds, value_blob, n_value):
    """Decode record ``n`` at ``pos``: (position after it or -1 if corrupt, bytes in the key and value
    buffers, timestamp delta, offset delta). Headers are not read."""
    length, pos = _varint(buf, pos, end)
    if pos < 0 or length < 0 or length > end - pos:
        return -1, n_key, n_value, 0, 0
    record_end = pos + length
    pos += 1  # record attributes (unused)
    ts_delta, pos = _varint(buf, pos, record_end)
    if pos < 0:
        return -1, n_key, n_value, 0, 0
    offset_delta, pos = _varint(buf, pos, record_end)
    if pos < 0:
        return -1, n_key, n_value, 0, 0
    pos, n_key = _field(buf, pos, record_end, key_bounds, n, key_blob, n_key)
    if pos < 0:
        return -1, n_key, n_value, 0, 0
    pos, n_value = _field(buf, pos, record_end, value_bounds, n, value_blob, n_value)
    if pos < 0:
        return -1, n_key, n_value, 0, 0
    return record_end, n_key, n_value, ts_delta, offset_delta


@njit(**JIT_OPTIONS)
def _decode(buf, table, offset, timestamp, key_bounds, key_blob, value_bounds, value_blob):
    size = buf.shape[0]
    at = 0
    n = 0
    n_key = 0
    n_value = 0
    next_offset = np.int64(-1)
    while True:
        if at + HEADER_BYTES > size:
            return n, at, next_offset, COMPLETE if at == size else PARTIAL_TAIL
        end = at + 12 + _int(buf, at + 8, 4)
        if end < at + HEADER_BYTES:
            return n, at, next_offset, CORRUPT
        if end > size:
            return n, at, next_offset, PARTIAL_TAIL
        if buf[at + 16] != 2:
            return n, at, next_offset, UNSUPPORTED
        attributes = _int(buf, at + 21, 2)
        if attributes & (_COMPRESSION_MASK | _TRANSACTIONAL_BIT | _CONTROL_BIT):
            return n, at, next_offset, UNSUPPORTED
        if _crc32c(buf, at + 21, end, table) != np.uint32(_int(buf, at + 17, 4) & 0xFFFFFFFF):
            return n, at, next_offset, CORRUPT
        base_offset = _int(buf, at, 8)
        last_delta = _int(buf, at + 23, 4)
        base_ts = _int(buf, at + 27, 8)
        max_ts = _int(buf, at + 35, 8)
        log_append_time = (attributes & _TIMESTAMP_TYPE_BIT) != 0
        count = _most_records(buf, at, end)
        if count < 0:
            return n, at, next_offset, CORRUPT
        first_of_batch = n
        pos = at + HEADER_BYTES
        for _ in range(count):
            pos, n_key, n_value, ts_delta, offset_delta = _record(buf, pos, end, n, key_bounds, key_blob, n_key,
                                                                   value_bounds, value_blob, n_value)
            if pos < 0:
                return first_of_batch, at, next_offset, CORRUPT  # nothing of a corrupt batch is returned
            offset[n] = base_offset + offset_delta
            timestamp[n] = max_ts if log_append_time else base_ts + ts_delta
            n += 1
        next_offset = base_offset + last_delta + 1
        at = end


class DecodedRecords(NamedTuple):
    offset: np.ndarray  # int64 (n,)
    timestamp_ms: np.ndarray  # int64 (n,)
    key_bounds: np.ndarray  # int64 (n, 2) into key_blob; end -1 for a record without a key
    key_blob: np.ndarray  # uint8
    value_bounds: np.ndarray  # int64 (n, 2) into value_blob; end -1 for a null value
    value_blob: np.ndarray  # uint8
    consumed_bytes: int  # bytes of ``buf`` decoded (whole batches)
    next_offset: int  # the offset after the last decoded batch, -1 if none
    stopped_by: int  # COMPLETE, PARTIAL_TAIL, UNSUPPORTED or CORRUPT


def decode_record_batches(buf) -> DecodedRecords:
    """Decode the v2 record batches at the start of ``buf`` (bytes-like) up to the first one this kernel
    does not handle; see the module docstring."""
    data = np.frombuffer(buf, np.uint8)
    upper = _count(data)
    offset = np.empty(upper, np.int64)
    timestamp = np.empty(upper, np.int64)
    key_bounds = np.empty((upper, 2), np.int64)
    value_bounds = np.empty((upper, 2), np.int64)
    # Keys and values together are never longer than the batches that hold them.
    key_blob = np.empty(data.shape[0], np.uint8)
    value_blob = np.empty(data.shape[0], np.uint8)
    n, consumed, next_offset, stopped_by = _decode(data, _CRC32C, offset, timestamp, key_bounds, key_blob,
                                                   value_bounds, value_blob)
    n_key = int(key_bounds[:n].max()) if n else 0
    n_value = int(value_bounds[:n].max()) if n else 0
    return DecodedRecords(offset[:n], timestamp[:n], key_bounds[:n], key_blob[:max(n_key, 0)],
                          value_bounds[:n], value_blob[:max(n_value, 0)], int(consumed), int(next_offset),
                          int(stopped_by))
