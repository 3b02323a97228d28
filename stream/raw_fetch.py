"""Fetched ``location-fixes`` as arrays, decoded from the fetch response's bytes, not record by record.

aiokafka's fetcher keeps each partition's fetched bytes as a ``MemoryRecords``
and, when ``getmany`` drains it, makes two Python objects a record (about
3 microseconds; a third of a worker's time a fix at full speed). A consumer
whose ``value_deserializer`` is :data:`RAW_CHUNKS` gets instead, per partition
and fetch, one :class:`RawChunk`: the values in one buffer with their bounds,
offsets and timestamps, decoded by :mod:`kernels.recordbatch`. A batch that
kernel leaves (compressed, transactional, control, older formats, a bad CRC)
goes through aiokafka's own decoding, CRC check and errors included, and comes
as a chunk of its own; the kernel goes on after it. Every other consumer in
the process (stage 2's, the checkpoint readers) is untouched.

This reaches into two names of ``aiokafka.consumer.fetcher`` (``MemoryRecords``
and ``PartitionRecords``, as of aiokafka 0.14); :func:`install` checks they are
what it expects and otherwise leaves aiokafka alone, with a warning, in which
case :data:`RAW_CHUNKS` is a plain pass-through deserializer and the consumer
gets ``ConsumerRecord`` objects as usual (:func:`chunk_of_records` turns those
into a chunk too), at about half the throughput. pyproject.toml pins aiokafka
to the minor version this was tested against (:data:`TESTED_AIOKAFKA`);
:func:`fast_path_engaged` says whether the hook is in, and the worker exports
it as the gauge ``hotspot_dwell_fetch_fast_path`` (alert
``HotspotDwellFetchSlowPath`` in deploy/prometheus).
"""

from __future__ import annotations

import inspect
import logging
from importlib import metadata
from typing import NamedTuple

import numpy as np
from aiokafka.consumer import fetcher as _fetcher

from kernels.recordbatch import HEADER_BYTES, decode_record_batches

log = logging.getLogger(__name__)

# The aiokafka minor version whose fetcher internals the hook was written and tested against
# (pyproject.toml pins aiokafka to it; tests/test_raw_fetch.py checks the two agree).
TESTED_AIOKAFKA = "0.14"
# PartitionRecords.__init__'s parameters in that version: the hook keeps the constructor aiokafka calls.
_PARTITION_RECORDS_PARAMS = ["self", "tp", "records", "aborted_transactions", "fetch_offset", "key_deserializer",
                             "value_deserializer", "check_crcs", "isolation_level"]


def RAW_CHUNKS(value: bytes) -> bytes:  # noqa: N802 (a marker, used as a constant)
    """The ``value_deserializer`` that asks for :class:`RawChunk` (a pass-through if the hook is absent)."""
    return value


class RawChunk(NamedTuple):
    """Records of one partition from one fetch, in offset order."""

    offset: np.ndarray  # int64 (n,)
    timestamp_ms: np.ndarray  # int64 (n,)
    value_bounds: np.ndarray  # int64 (n + 1,): value i is value_blob[value_bounds[i]:value_bounds[i + 1]]
    value_blob: np.ndarray  # uint8; a null value is empty here
    null_value: np.ndarray  # bool (n,): the record's value is null (a tombstone), not empty
    key_bounds: np.ndarray  # int64 (n, 2) into key_blob, end -1 for no key
    key_blob: np.ndarray  # uint8

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def value(self, i: int) -> bytes | None:
        if self.null_value[i]:
            return None
        return self.value_blob[self.value_bounds[i]:self.value_bounds[i + 1]].tobytes()

    def key(self, i: int) -> bytes | None:
        lo, hi = self.key_bounds[i]
        return None if hi < 0 else self.key_blob[lo:hi].tobytes()

    def slices(self, most: int):
        """The chunk in pieces of at most ``most`` records (views, no copies)."""
        n = len(self)
        if n <= most:
            yield self
            return
        for lo in range(0, n, most):
            hi = min(lo + most, n)
            base = self.value_bounds[lo]
            yield RawChunk(self.offset[lo:hi], self.timestamp_ms[lo:hi], self.value_bounds[lo:hi + 1] - base,
                           self.value_blob[base:self.value_bounds[hi]], self.null_value[lo:hi],
                           self.key_bounds[lo:hi], self.key_blob)


def chunk_of_records(records) -> RawChunk:
    """A chunk from ``ConsumerRecord``-like objects (aiokafka's own decoding)."""
    values = [r.value or b"" for r in records]
    keys = [r.key for r in records]
    n = len(records)
    value_bounds = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, values), np.int64, n), out=value_bounds[1:])
    key_len = np.fromiter((-1 if k is None else len(k) for k in keys), np.int64, n)
    key_end = np.cumsum(np.maximum(key_len, 0))
    key_bounds = np.column_stack([key_end - np.maximum(key_len, 0), np.where(key_len < 0, -1, key_end)])
    return RawChunk(np.fromiter((r.offset for r in records), np.int64, n),
                    np.fromiter((r.timestamp for r in records), np.int64, n), value_bounds,
                    np.frombuffer(b"".join(values), np.uint8),
                    np.fromiter((r.value is None for r in records), np.bool_, n),
                    key_bounds, np.frombuffer(b"".join(k or b"" for k in keys), np.uint8))


def _decoded_chunk(buf, fetch_offset: int) -> tuple[RawChunk, int, int]:
    """(chunk of the records at or after ``fetch_offset``, bytes decoded, next offset or -1)."""
    d = decode_record_batches(buf)
    # A fetch starts at the batch that holds the offset asked for: drop what comes before it. Offsets
    # ascend, and the kernel writes values one after another, so what is kept is a suffix of its buffer.
    first = int(np.searchsorted(d.offset, fetch_offset))
    starts = d.value_bounds[first:, 0]
    base = int(starts[0]) if starts.shape[0] else d.value_blob.shape[0]
    value_bounds = np.append(starts, d.value_blob.shape[0]) - base
    chunk = RawChunk(d.offset[first:], d.timestamp_ms[first:], value_bounds, d.value_blob[base:],
                     d.value_bounds[first:, 1] < 0, d.key_bounds[first:], d.key_blob)
    return chunk, d.consumed_bytes, d.next_offset


class _KeptBytes(_fetcher.MemoryRecords):
    """aiokafka's MemoryRecords that also keeps the bytes it was made from."""

    def __init__(self, raw) -> None:
        super().__init__(raw)
        self.raw = raw


class _ChunkingPartitionRecords(_fetcher.PartitionRecords):
    def _unpack_records(self):
        if self._value_deserializer is not RAW_CHUNKS or not isinstance(self._records, _KeptBytes):
            yield from super()._unpack_records()
            return
        raw = memoryview(self._records.raw)
        at = 0
        while at < len(raw):
            chunk, consumed, next_offset = _decoded_chunk(raw[at:], self.next_fetch_offset)
            if next_offset >= 0:
                self.next_fetch_offset = max(self.next_fetch_offset, next_offset)
            if len(chunk):
                yield chunk
            at += consumed
            # A batch the kernel left, decoded aiokafka's way (decompression, transactions, its CRC error);
            # then the kernel goes on after it. A partial last batch is left, as aiokafka leaves it.
            size = 12 + int.from_bytes(raw[at + 8:at + 12], "big", signed=True) if at + 12 <= len(raw) else 0
            if at + 12 > len(raw) or at + size > len(raw):
                return
            if size < HEADER_BYTES:
                size = len(raw) - at  # a length that cannot be right: aiokafka has the rest, and its error
            self._records = _fetcher.MemoryRecords(bytes(raw[at:at + size]))
            rest = list(super()._unpack_records())
            if rest:
                yield chunk_of_records(rest)
            at += size


_installed = False


def aiokafka_version() -> str:
    """The installed aiokafka's version ("unknown" if its metadata is missing)."""
    try:
        return metadata.version("aiokafka")
    except metadata.PackageNotFoundError:
        return "unknown"


def incompatibility(fetcher) -> str | None:
    """Why the hook cannot go into this ``aiokafka.consumer.fetcher`` module, or None if it fits.

    Only looks: nothing is changed.
    """
    records = getattr(fetcher, "PartitionRecords", None)
    if records is None or getattr(fetcher, "MemoryRecords", None) is None:
        return "aiokafka.consumer.fetcher has no PartitionRecords or MemoryRecords"
    params = list(inspect.signature(records.__init__).parameters)
    if params != _PARTITION_RECORDS_PARAMS:
        return f"PartitionRecords takes ({', '.join(params[1:])}), not ({', '.join(_PARTITION_RECORDS_PARAMS[1:])})"
    if not hasattr(records, "_unpack_records"):
        return "PartitionRecords has no _unpack_records"
    return None


def install() -> bool:
    """Hook the chunking into aiokafka's fetcher (once); False, and aiokafka left alone, if its internals
    are not the ones this was written for."""
    global _installed
    if _installed:
        return True
    reason = incompatibility(_fetcher)
    if reason is not None:
        log.warning("stream.raw_fetch cannot hook the fetcher of aiokafka %s (%s): fetched fixes are decoded "
                    "one ConsumerRecord at a time and stage 1's throughput drops to about half. The hook is "
                    "tested against aiokafka %s.x, the version pyproject.toml pins: install that one.",
                    aiokafka_version(), reason, TESTED_AIOKAFKA)
        return False
    _fetcher.MemoryRecords = _KeptBytes
    _fetcher.PartitionRecords = _ChunkingPartitionRecords
    _installed = True
    return True


def fast_path_engaged() -> bool:
    """True while aiokafka's fetcher makes chunks of arrays for :data:`RAW_CHUNKS` consumers (:func:`install`
    went in and its classes are still the ones aiokafka's fetcher uses); False before :func:`install`, after
    it declined, or if something has put other classes in their place since."""
    return (_installed and _fetcher.PartitionRecords is _ChunkingPartitionRecords
            and _fetcher.MemoryRecords is _KeptBytes)
