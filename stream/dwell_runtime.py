"""Stage 1's glue between Faust and the pure tracker: trackers, checkpoints, output.

The agent in :mod:`stream.app` stays thin: decode, ``runtime.handle``, ack.
Checkpoints are snapshots of a partition's :class:`OfficerTracker` written
to a Faust table (changelog topic) together with the input offsets they
include. Events are acked, and so their offsets committed, only when a
checkpoint that includes them has been written, so a restarted worker
restores the snapshot and re-reads exactly the batches after it: state is
exact, outputs are at-least-once with the same ids.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from geo.hotspots import HotspotSet
from kernels import reasons
from stream.batches import FixBatch
from stream.engine import RuleSettings
from stream.checkpoints import CheckpointedStage
from stream.events import dead_letter_headers, visit_events, visit_id, visit_opened_events
from stream.policing_day import PolicingCalendar
from stream.producer import partition_of
from stream.settings import WorkerSettings
from stream.stage1 import OfficerTracker, TrackerOutput
from stream.stage2 import visit_batch_messages

log = logging.getLogger(__name__)

DEAD_LETTERED = (reasons.LATE, reasons.OUTSIDE_CRS)  # duplicates and speed rejects are counted only
DEAD_LETTERED_NAMES = frozenset(reasons.REASON_NAMES[c] for c in DEAD_LETTERED)

Send = Callable[..., Awaitable]


@dataclass
class Stage1Stats:
    batches: int = 0
    fixes: int = 0
    skipped: int = 0
    visits: int = 0
    patrols: int = 0
    rejected: dict | None = None
    checkpoints: int = 0


class DwellRuntime(CheckpointedStage):
    """Trackers of the partitions this worker owns, and what they send."""

    def __init__(self, settings: WorkerSettings, hotspots: HotspotSet, send: Send) -> None:
        self.settings = settings
        self.hotspots = hotspots
        self.rules: RuleSettings = settings.rules
        self.calendar = PolicingCalendar(self.rules.timezone, self.rules.day_start)
        super().__init__(settings.checkpoint_interval_s)
        self._send = send
        self.trackers: dict[int, OfficerTracker] = {}
        self.stats = Stage1Stats(rejected={})
        self._hotspot_ids = np.asarray(hotspots.ids, dtype=object)
        # Stage 2's share of the current fix-batch, per stage-2 partition, in
        # order: closed visits and day marks (one visit-batches message each).
        self._outbox: dict[int, list] = {}
        self._partition_of_hotspot = np.array([partition_of(h.encode(), settings.partitions) for h in hotspots.ids],
                                              dtype=np.int64)

    # -- trackers and checkpoints --------------------------------------------------

    def tracker(self, partition: int, table) -> OfficerTracker:
        """The partition's tracker, restored from its last checkpoint if there is one."""
        tracker = self.trackers.get(partition)
        if tracker is None:
            data = self.checkpoints.load(table, partition)
            if data is None:
                tracker = OfficerTracker(self.hotspots, self.rules, partition)
            else:
                tracker = OfficerTracker.restore(data, self.hotspots, self.rules)
                log.info("partition %d restored from checkpoint at input offset %d", partition, tracker.last_offset)
            self.trackers[partition] = tracker
        return tracker

    def _states(self) -> dict:
        return self.trackers

    def forget(self, partitions) -> None:
        super().forget(partitions)
        self.drop_unsent()

    # -- one batch ----------------------------------------------------------------------

    async def send(self, topic, key, value, partition, timestamp, headers) -> None:
        self._inflight.append(await self._send(topic, key, value, partition, timestamp, headers))

    async def handle(self, tracker: OfficerTracker, batch: FixBatch) -> TrackerOutput:
        out = tracker.step(batch)
        self.stats.batches += 1
        self.stats.fixes += len(batch)
        self.stats.skipped += out.skipped
        await self._send_visits(tracker, out.visits)
        await self._send_opened(tracker, out.opened)
        await self._dead_letter(batch, out)
        return out

    async def _send_opened(self, tracker: OfficerTracker, opened) -> None:
        if opened is None or not len(opened.start_ms):
            return
        for key, value, headers in visit_opened_events(tracker.registry.ids_of(opened.officer),
                                                       self._hotspot_ids[opened.hotspot], opened.start_ms):
            await self.send(self.settings.topic("dwell-intervals"), key, value, None, None, headers)

    async def _send_visits(self, tracker: OfficerTracker, visits) -> None:
        if not len(visits.start_ms):
            return
        for start, end in zip(visits.start_ms.tolist(), visits.end_ms.tolist()):
            first, last = self.calendar.day_of_ms(start), self.calendar.day_of_ms(end)
            for k in range((last - first).days + 1):
                tracker.visit_days.add((first + dt.timedelta(days=k)).isoformat())
        officers = tracker.registry.ids_of(visits.officer)
        hotspot_ids = self._hotspot_ids[visits.hotspot]
        ids = [visit_id(o, h, start) for o, h, start in zip(officers.tolist(), hotspot_ids.tolist(),
                                                              visits.start_ms.tolist())]
        for vid, h, q, start, end in zip(ids, hotspot_ids.tolist(), self._partition_of_hotspot[visits.hotspot].tolist(),
                                         visits.start_ms.tolist(), visits.end_ms.tolist()):
            self._outbox.setdefault(q, []).append(["v", vid, h, start, end])
        for kind, key, value, headers in visit_events(officers, hotspot_ids, visits.start_ms, visits.end_ms,
                                                      visits.n_fixes, self.rules.min_patrol_s, ids):
            await self.send(self.settings.topic(kind), key, value, None, None, headers)
            if kind == "patrol-events":
                self.stats.patrols += 1
            else:
                self.stats.visits += 1

    async def _dead_letter(self, batch: FixBatch, out: TrackerOutput) -> None:
        rej = out.rejects
        for offset, code in zip(rej.row.tolist(), rej.reason.tolist()):
            name = reasons.REASON_NAMES.get(code, "unknown")
            self.stats.rejected[name] = self.stats.rejected.get(name, 0) + 1
            if code not in DEAD_LETTERED:
                continue
            i = int(np.searchsorted(batch.offset, offset))
            if i < len(batch) and batch.offset[i] == offset:
                value = batch.raw_value(i)
                key = batch.ids_blob[batch.officer_start[i]:batch.officer_end[i]].tobytes()
            else:  # not in this batch (held in the reorder buffer): rebuild it
                value, key = json.dumps({"source_offset": offset}).encode(), None
            await self.send(self.settings.topic("location-fixes-dead-letter"), key, value, None, None,
                             dead_letter_headers(name, self.settings.topic("location-fixes"), batch.partition,
                                                 offset))

    async def close_day_if_due(self, tracker: OfficerTracker) -> None:
        """Close the policing days the partition's event time has passed by the grace.

        Marks are cumulative ("this input partition has closed every day up
        to this one") and say whether the partition had visits in the day, so
        stage 2 emits rows for the same days as the replay: scheduled days
        and days with visits.
        """
        if tracker.max_event_ms is None:
            return
        grace_ms = self.settings.day_close_grace_s * 1000
        if tracker.next_day_close_ms is None:
            tracker.next_day_close_ms = self._day_end_after(tracker.min_event_ms)
            # Days wholly before this partition's first fix are closed for it.
            first_day = self.calendar.day_of_ms(tracker.min_event_ms)
            await self._mark(tracker, first_day - dt.timedelta(days=1), had_visits=False)
        while tracker.max_event_ms >= tracker.next_day_close_ms + grace_ms:
            if tracker.released_for_ms != tracker.next_day_close_ms:  # once per boundary
                out = tracker.close_day(tracker.next_day_close_ms)
                await self._send_visits(tracker, out.visits)
                tracker.released_for_ms = tracker.next_day_close_ms
            if np.any(tracker.open_visits().start_ms < tracker.next_day_close_ms):
                # A visit that began in the day is still going on: the day's
                # mark waits until it closes, so the day counts all of it.
                return
            day = self.calendar.day_of_ms(tracker.next_day_close_ms - 1)
            await self._mark(tracker, day, had_visits=day.isoformat() in tracker.visit_days)
            tracker.visit_days.discard(day.isoformat())
            tracker.next_day_close_ms = self._day_end_after(tracker.next_day_close_ms)

    async def _mark(self, tracker: OfficerTracker, day: dt.date, had_visits: bool) -> None:
        # In band for every stage-2 partition, after this partition's visits,
        # so a mark can never overtake them.
        for q in range(self.settings.partitions):
            self._outbox.setdefault(q, []).append(["m", day.isoformat(), bool(had_visits)])

    async def send_visit_batches(self, tracker: OfficerTracker, offset: int) -> None:
        """Send stage 2 its share of the fix-batch at ``offset``: per stage-2 partition one message, or
        several under the broker's size limit (a day's close can close every open visit at once)."""
        outbox, self._outbox = self._outbox, {}
        key = f"p{tracker.partition}".encode()
        for q, items in sorted(outbox.items()):
            for value in visit_batch_messages(tracker.partition, offset, items):
                await self.send(self.settings.topic("visit-batches"), key, value, q, None, None)

    def drop_unsent(self) -> None:
        """The partition was revoked mid-batch: its outputs will be made again by the next owner."""
        self._outbox = {}

    def _day_end_after(self, ts_ms: int) -> int:
        day = self.calendar.day_of_ms(ts_ms)
        return self.calendar.day_start_ms(day + dt.timedelta(days=1))
