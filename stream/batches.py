"""A chunk of ``location-fixes`` records decoded and validated at once, as numpy columns.

Stage 1 turns each partition's chunk from ``getmany`` into one
:class:`FixBatch` (:func:`build_batch`): the valid fixes as columns for the
kernels, the rest named with their reason for the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kernels.textparse import hash_spans
from stream.fixes import check_values
from stream.jsonfix import decode_records


@dataclass(frozen=True)
class FixBatch:
    """Valid fixes of one input partition chunk, in arrival (offset) order.

    ``officer_start/end`` index ``ids_blob`` (each distinct id stored once);
    ``raw_blob[raw_offsets[i]:raw_offsets[i + 1]]`` is fix i's original
    message value, kept so a later rejection (late, impossible speed) can
    still be dead-lettered with the bytes that arrived.
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
    raw_offsets: np.ndarray
    ids_blob: np.ndarray
    raw_blob: np.ndarray

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def raw_value(self, i: int) -> bytes:
        return self.raw_blob[self.raw_offsets[i]:self.raw_offsets[i + 1]].tobytes()


def build_batch(partition: int, offsets: Sequence[int], values: Sequence[bytes], *, time_min_ms: int,
                time_max_ms: int) -> tuple[FixBatch, np.ndarray, np.ndarray]:
    """Decode and validate one chunk of raw ``location-fixes`` values.

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
    dec = decode_records(values)
    ok = np.flatnonzero(dec.status == 0)
    status = dec.status.copy()
    status[ok] = check_values(dec.ts_ms[ok], dec.lat[ok], dec.lon[ok], dec.accuracy_m[ok],
                              time_min_ms=time_min_ms, time_max_ms=time_max_ms)
    good = np.flatnonzero(status == 0)
    # Each distinct officer id once in the blob; rows point at their span.
    ids = [dec.officer_ids[i] for i in good]
    distinct = {}
    for officer in ids:
        distinct.setdefault(officer, len(distinct))
    encoded = [o.encode("utf-8") for o in distinct]
    id_offsets = np.zeros(len(encoded) + 1, np.int64)
    if encoded:
        np.cumsum([len(e) for e in encoded], out=id_offsets[1:])
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    which = np.fromiter((distinct[o] for o in ids), dtype=np.int64, count=len(ids))
    id_hash = hash_spans(blob, id_offsets)
    raw = [values[i] for i in good]
    raw_offsets = np.zeros(len(raw) + 1, np.int64)
    if raw:
        np.cumsum([len(r) for r in raw], out=raw_offsets[1:])
    offs = np.asarray(offsets, dtype=np.int64)
    batch = FixBatch(
        partition=int(partition),
        first_offset=int(offs[0]) if n else -1,
        last_offset=int(offs[-1]) if n else -1,
        offset=offs[good],
        officer_hash=id_hash[which],
        officer_start=id_offsets[:-1][which],
        officer_end=id_offsets[1:][which],
        ts_ms=dec.ts_ms[good],
        lat=dec.lat[good],
        lon=dec.lon[good],
        accuracy_m=dec.accuracy_m[good],
        raw_offsets=raw_offsets,
        ids_blob=blob,
        raw_blob=np.frombuffer(b"".join(raw), dtype=np.uint8),
    )
    bad = np.flatnonzero(status != 0)
    return batch, bad.astype(np.int64), status[bad]
