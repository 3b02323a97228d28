"""A chunk of ``location-fixes`` records decoded and validated at once, as numpy columns.

Stage 1 turns each partition's chunk from ``getmany`` into one
:class:`FixBatch` (:func:`build_batch`): the valid fixes as columns for the
kernels, the rest named with their reason for the dead-letter topic. No
Python object is made per record on the common path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kernels.fix_values import check_fix_values
from kernels.jsonscan import FALLBACK, scan_fix_records
from kernels.reasons import OVERSIZED
from kernels.textparse import hash_ranges
from stream.fixes import MAX_FIX_BYTES, MAX_ID_CHARS
from stream.jsonfix import decode_records


@dataclass(frozen=True)
class FixBatch:
    """Valid fixes of one input partition chunk, in arrival (offset) order.

    ``blob`` holds the chunk's record values back to back (and, after them,
    ids the careful decoder had to unescape); ``blob[officer_start[i]:
    officer_end[i]]`` is fix i's officer id and ``blob[value_start[i]:
    value_end[i]]`` its original message value, kept so that a later
    rejection (late, impossible speed) can still be dead-lettered with the
    bytes that arrived.
    """

    partition: int
    first_offset: int  # first input offset of the chunk (valid or not)
    last_offset: int  # last input offset of the chunk
    offset: np.ndarray
    officer_hash: np.ndarray
    officer_start: np.ndarray
    officer_end: np.ndarray
    ts_ms: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray
    value_start: np.ndarray
    value_end: np.ndarray
    blob: np.ndarray

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def raw_value(self, i: int) -> bytes:
        return self.blob[self.value_start[i]:self.value_end[i]].tobytes()

    def officer_id_bytes(self, i: int) -> bytes:
        return self.blob[self.officer_start[i]:self.officer_end[i]].tobytes()


def build_batch(partition: int, offsets: Sequence[int], values: Sequence[bytes], *, time_min_ms: int,
                time_max_ms: int) -> tuple[FixBatch, np.ndarray, np.ndarray]:
    """Decode and validate one chunk of raw ``location-fixes`` values.

    The numba scanner (:mod:`kernels.jsonscan`) decodes the common shape of
    record in one call; the records it leaves go through msgspec one by one,
    with the same results a replay gets.

    Returns
    -------
    batch : FixBatch
        The valid fixes.
    rejected_index : ndarray of int64
        Positions (into ``values``) of records that failed.
    rejected_reason : ndarray of int8
        Their ``kernels.reasons`` codes, for the dead-letter topic.
    """
    n = len(values)
    bounds = np.zeros(n + 1, np.int64)
    if n:
        np.cumsum(np.fromiter(map(len, values), np.int64, n), out=bounds[1:])
    return build_batch_from_blob(partition, offsets, np.frombuffer(b"".join(values), np.uint8), bounds,
                                 time_min_ms=time_min_ms, time_max_ms=time_max_ms)


def build_batch_from_blob(partition: int, offsets, blob: np.ndarray, bounds: np.ndarray, *, time_min_ms: int,
                          time_max_ms: int) -> tuple[FixBatch, np.ndarray, np.ndarray]:
    """:func:`build_batch` for values already in one buffer: value ``i`` is ``blob[bounds[i]:bounds[i + 1]]``
    (as :mod:`stream.raw_fetch` delivers them)."""
    n = bounds.shape[0] - 1
    id_span, ts_ms, lat, lon, acc, status = scan_fix_records(blob, bounds, MAX_ID_CHARS)
    status[np.diff(bounds) > MAX_FIX_BYTES] = OVERSIZED  # not a fix, whatever it holds
    careful = np.flatnonzero(status == FALLBACK)
    if careful.size:
        dec = decode_records([blob[bounds[i]:bounds[i + 1]].tobytes() for i in careful.tolist()])
        status[careful] = dec.status
        ts_ms[careful] = dec.ts_ms
        lat[careful] = dec.lat
        lon[careful] = dec.lon
        acc[careful] = dec.accuracy_m
        # Their ids (unescaped, trimmed) go after the values.
        ok = np.flatnonzero(dec.status == 0)
        encoded = [dec.officer_ids[j].encode("utf-8") for j in ok.tolist()]
        if encoded:
            ends = blob.shape[0] + np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)))
            id_span[careful[ok], 1] = ends
            id_span[careful[ok], 0] = ends - np.fromiter(map(len, encoded), np.int64, len(encoded))
            blob = np.concatenate([blob, np.frombuffer(b"".join(encoded), np.uint8)])
    check_fix_values(ts_ms, lat, lon, acc, status, time_min_ms=time_min_ms, time_max_ms=time_max_ms)
    good = np.flatnonzero(status == 0)
    start, end = id_span[good, 0], id_span[good, 1]
    offs = np.asarray(offsets, dtype=np.int64)
    batch = FixBatch(
        partition=int(partition),
        first_offset=int(offs[0]) if n else -1,
        last_offset=int(offs[-1]) if n else -1,
        offset=offs[good],
        officer_hash=hash_ranges(blob, start, end),
        officer_start=start,
        officer_end=end,
        ts_ms=ts_ms[good],
        lat=lat[good],
        lon=lon[good],
        accuracy_m=acc[good],
        value_start=bounds[:-1][good],
        value_end=bounds[1:][good],
        blob=blob,
    )
    bad = np.flatnonzero(status != 0)
    return batch, bad.astype(np.int64), status[bad]
