"""Stage 1 as a pure state step: one input partition's officers, batch by batch.

``tracker.step(batch)`` advances every officer of the partition and returns
the visits that closed and the fixes rejected by the ordering rules. No
Kafka here: :mod:`stream.stage1_consumer` feeds it decoded chunks of
``location-fixes``, the tests feed it directly. The whole state round-trips through
:meth:`OfficerTracker.snapshot` / :meth:`OfficerTracker.restore`, which the
consumer checkpoints to the ``officer-checkpoints`` topic.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from geo.hotspots import HotspotSet
from stream.batches import FixBatch
from stream.engine import DwellEngine, RuleSettings, Visits
from kernels._checks import seconds_to_ms
from stream.fixes import FixColumns, OfficerRegistry, Rejects

SNAPSHOT_VERSION = 3
_READABLE_VERSIONS = (2, 3)  # version 2 had no event time of its own: it restarts from the newest fix
_NONE = -(2**63)  # "not set" in the snapshot's event_ms array


@dataclass(frozen=True)
class TrackerOutput:
    """What one batch produced: opened and closed visits, rejected fixes (by input offset)."""

    visits: Visits
    rejects: Rejects  # row = input offset
    skipped: int  # fixes already processed before (a re-sent batch)
    opened: Visits | None = None  # visits still open that this batch opened (end = last inside fix so far)


class OfficerTracker:
    """Visit state of the officers of one input partition.

    Parameters
    ----------
    hotspots : HotspotSet
    rules : RuleSettings
    partition : int
        The input partition this tracker owns.
    """

    def __init__(self, hotspots: HotspotSet, rules: RuleSettings, partition: int) -> None:
        self.hotspots = hotspots
        self.rules = rules
        self.partition = partition
        self.registry = OfficerRegistry()
        self.engine = DwellEngine(hotspots, rules)
        self._reorder_ms = seconds_to_ms(rules.reorder_window_s, "reorder_window_s")
        self._max_gap_ms = seconds_to_ms(rules.max_gap_s, "max_gap_s")
        # Highest input offset already applied: records read again (around a
        # rebalance) are applied only past it, so nothing counts twice.
        self.last_offset = -1
        # Event time seen in this partition, and the next day end to close.
        self.min_event_ms: int | None = None
        self.max_event_ms: int | None = None
        # The partition's event time: its newest fix, or further on where the wall clock moved a quiet
        # partition (advance_event_time); and the watermark the silence rule reads, the event time less
        # the reorder window while fixes flow.
        self._clock_ms: int | None = None
        self.watermark_ms: int | None = None
        self.next_day_close_ms: int | None = None
        self.released_for_ms: int | None = None  # the day end whose buffers were released
        self.visit_days: set[str] = set()  # policing days (ISO) with visits, not yet marked closed
        # A lower bound on the newest fix of every officer with an open visit or a buffered fix (None:
        # unknown), so that most batches find nobody silent without looking.
        self._silence_floor_ms: int | None = None
        self.version = 0  # counts changes of state: a checkpoint is due when it moved

    @property
    def clock_ms(self) -> int | None:
        """The partition's newest event time: its newest fix, or where the wall clock has moved it on."""
        return self._clock_ms

    def advance_event_time(self, clock_ms: int, watermark_ms: int) -> bool:
        """Move the partition's event time and watermark on (never back); True if either moved."""
        moved = False
        if self._clock_ms is None or clock_ms > self._clock_ms:
            self._clock_ms = int(clock_ms)
            moved = True
        if self.watermark_ms is None or watermark_ms > self.watermark_ms:
            self.watermark_ms = int(watermark_ms)
            moved = True
        if moved:
            self.version += 1
        return moved

    def close_silent(self) -> TrackerOutput:
        """Close the visits of officers silent for more than ``max_gap_s`` of the partition's event time.

        Silence is not presence, at every moment: an officer whose newest fix is older than the
        watermark less ``max_gap_s`` has his buffered fixes released and his visits ended, with the
        bounds the end of a replay gives them. Cheap when nobody can be silent yet.
        """
        if self.watermark_ms is None:
            return TrackerOutput(Visits.empty(), Rejects.empty(), 0)
        before = self.watermark_ms - self._max_gap_ms
        if self._silence_floor_ms is not None and before <= self._silence_floor_ms:
            return TrackerOutput(Visits.empty(), Rejects.empty(), 0)
        result = self.engine.close_silent(self.watermark_ms)
        floor = self.engine.newest_fix_floor_ms()
        self._silence_floor_ms = np.iinfo(np.int64).max if floor is None else floor
        if len(result.visits.start_ms) or len(result.rejects.row):
            self.version += 1
        return TrackerOutput(result.visits, result.rejects, 0)

    def step(self, batch: FixBatch) -> TrackerOutput:
        fresh = batch.offset > self.last_offset
        skipped = int(len(batch) - np.count_nonzero(fresh))
        if batch.last_offset > self.last_offset:
            self.last_offset = int(batch.last_offset)
            self.version += 1
        idx = np.flatnonzero(fresh)
        if idx.size == 0:
            return TrackerOutput(Visits.empty(), Rejects.empty(), skipped)
        officer = self.registry.codes_of_hashes(batch.officer_hash[idx], batch.blob,
                                                batch.officer_start[idx], batch.officer_end[idx])
        fixes = FixColumns(batch.offset[idx], officer, batch.ts_ms[idx], batch.lat[idx], batch.lon[idx],
                           batch.accuracy_m[idx])
        lo, hi = int(fixes.ts_ms.min()), int(fixes.ts_ms.max())
        self.min_event_ms = lo if self.min_event_ms is None else min(self.min_event_ms, lo)
        self.max_event_ms = hi if self.max_event_ms is None else max(self.max_event_ms, hi)
        self.advance_event_time(hi, hi - self._reorder_ms)
        if self._silence_floor_ms is not None:
            self._silence_floor_ms = min(self._silence_floor_ms, lo)  # the batch's officers are heard from since
        result = self.engine.step(fixes)
        return TrackerOutput(result.visits, result.rejects, skipped, self.engine.opened_visits())

    def close_day(self, boundary_ms: int) -> TrackerOutput:
        """The policing day ending at ``boundary_ms`` is over in this partition's event time.

        The reorder buffer is released and every visit last seen before the
        boundary closes: officers who went off duty get their last visits,
        as a replay gets them at the end of its file.
        """
        released = self.engine.release_pending()
        stale = self.engine.close_stale(boundary_ms)
        self._silence_floor_ms = None  # buffers released: look again
        self.version += 1
        return TrackerOutput(Visits.concat([released.visits, stale]), released.rejects, 0)

    def open_visits(self) -> Visits:
        return self.engine.open_visits()

    def state_bytes(self) -> int:
        """Bytes of the arrays that hold this partition's officers (ids, rules state, open visits, buffer)."""
        return self.registry.nbytes() + int(sum(a.nbytes for a in self.engine.export_state().values()))

    # -- checkpoints -------------------------------------------------------------

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """The whole state as named arrays, copied (the engine's own arrays change in place)."""
        arrays = {"version": np.array([SNAPSHOT_VERSION]), "partition": np.array([self.partition]),
                  "last_offset": np.array([self.last_offset]),
                  "event_ms": np.array([_NONE if v is None else v for v in
                                        (self.min_event_ms, self.max_event_ms, self.next_day_close_ms,
                                         self.released_for_ms, self._clock_ms, self.watermark_ms)], np.int64)}
        arrays["visit_days"] = np.array(sorted(self.visit_days), dtype="U10")
        arrays.update(self.registry.export_state())  # copies already
        arrays.update({k: v.copy() for k, v in self.engine.export_state().items()})
        return arrays

    def snapshot(self) -> bytes:
        """The whole state as bytes (:func:`encode_arrays`, no pickles)."""
        return encode_arrays(self.snapshot_arrays())

    @classmethod
    def restore(cls, data: bytes, hotspots: HotspotSet, rules: RuleSettings) -> "OfficerTracker":
        arrays = decode_arrays(data)
        if int(arrays["version"][0]) not in _READABLE_VERSIONS:
            raise ValueError(f"snapshot version {int(arrays['version'][0])} is not one of {_READABLE_VERSIONS}")
        tracker = cls(hotspots, rules, int(arrays["partition"][0]))
        tracker.last_offset = int(arrays["last_offset"][0])
        ev = [None if v == _NONE else int(v) for v in arrays["event_ms"].tolist()]
        tracker.min_event_ms, tracker.max_event_ms, tracker.next_day_close_ms, tracker.released_for_ms = ev[:4]
        if len(ev) > 4:
            tracker._clock_ms, tracker.watermark_ms = ev[4:6]
        elif tracker.max_event_ms is not None:
            tracker._clock_ms, tracker.watermark_ms = tracker.max_event_ms, tracker.max_event_ms - tracker._reorder_ms
        tracker.visit_days = set(arrays["visit_days"].tolist())
        tracker.registry = OfficerRegistry.from_state(arrays)
        tracker.engine.import_state(arrays)
        return tracker


_MAGIC = b"HDS2"
_HEAD = struct.Struct("<4sI")


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays as one byte string: magic, a JSON table of (name, dtype, shape), the raw data.

    Plain numeric and fixed-width text dtypes only (no objects, so no pickles);
    cheaper than ``.npz``, whose zip layer copies everything once more.
    """
    table, parts = [], []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects")
        table.append([name, a.dtype.str, list(a.shape)])
        parts.append(a.data)
    head = json.dumps(table).encode()
    return b"".join([_HEAD.pack(_MAGIC, len(head)), head, *parts])


def decode_arrays(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of :func:`encode_arrays` (copies, so they can change in place)."""
    if len(data) < _HEAD.size or data[:4] != _MAGIC:
        raise ValueError("not an officer-state snapshot (bad magic)")
    _, n = _HEAD.unpack_from(data, 0)
    pos = _HEAD.size + n
    out = {}
    for name, dtype, shape in json.loads(data[_HEAD.size:pos]):
        dt = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if pos + size > len(data):
            raise ValueError(f"snapshot truncated in array {name!r}")
        out[name] = np.frombuffer(data, dt, count=size // dt.itemsize if dt.itemsize else 0,
                                  offset=pos).reshape(shape).copy()
        pos += size
    return out
