"""Stage 1 as a pure state step: one input partition's officers, batch by batch.

``tracker.step(batch)`` advances every officer of the partition and returns
the visits that closed and the fixes rejected by the ordering rules. No
Kafka here: the Faust agent feeds it decoded ``fix-batches`` messages, the
tests feed it directly. The whole state round-trips through
:meth:`OfficerTracker.snapshot` / :meth:`OfficerTracker.restore`, which the
agent checkpoints in a Faust table.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from geo.hotspots import HotspotSet
from stream.batches import FixBatch
from stream.engine import DwellEngine, RuleSettings, Visits
from stream.fixes import FixColumns, OfficerRegistry, Rejects

SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class TrackerOutput:
    """What one batch produced: closed visits, rejected fixes (by input offset)."""

    visits: Visits
    rejects: Rejects  # row = input offset
    skipped: int  # fixes already processed before (a re-sent batch)


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
        # Highest input offset already applied: a batch re-sent after an
        # ingest crash is applied only past it, so nothing counts twice.
        self.last_offset = -1

    def step(self, batch: FixBatch) -> TrackerOutput:
        fresh = batch.offset > self.last_offset
        skipped = int(len(batch) - np.count_nonzero(fresh))
        if batch.last_offset > self.last_offset:
            self.last_offset = int(batch.last_offset)
        idx = np.flatnonzero(fresh)
        if idx.size == 0:
            return TrackerOutput(Visits.empty(), Rejects.empty(), skipped)
        officer = self.registry.codes_of_hashes(batch.officer_hash[idx], batch.ids_blob,
                                                batch.officer_start[idx], batch.officer_end[idx])
        fixes = FixColumns(batch.offset[idx], officer, batch.ts_ms[idx], batch.lat[idx], batch.lon[idx],
                           batch.accuracy_m[idx])
        result = self.engine.step(fixes)
        return TrackerOutput(result.visits, result.rejects, skipped)

    def close_stale(self, watermark_ms: int) -> Visits:
        """Close visits of officers silent for longer than max_gap_s before ``watermark_ms``."""
        return self.engine.close_stale(watermark_ms)

    def open_visits(self) -> Visits:
        return self.engine.open_visits()

    # -- checkpoints -------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes (numpy ``.npz``, no pickles)."""
        arrays = {"version": np.array([SNAPSHOT_VERSION]), "partition": np.array([self.partition]),
                  "last_offset": np.array([self.last_offset])}
        arrays.update(self.registry.export_state())
        arrays.update(self.engine.export_state())
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def restore(cls, data: bytes, hotspots: HotspotSet, rules: RuleSettings) -> "OfficerTracker":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if int(arrays["version"][0]) != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {int(arrays['version'][0])} is not {SNAPSHOT_VERSION}")
        tracker = cls(hotspots, rules, int(arrays["partition"][0]))
        tracker.last_offset = int(arrays["last_offset"][0])
        tracker.registry = OfficerRegistry.from_state(arrays)
        tracker.engine.import_state(arrays)
        return tracker
