"""Stage 1's runtime: the officer trackers of this worker's input partitions and what they send.

:mod:`stream.stage1_consumer` drives it: each chunk of ``location-fixes`` a
partition receives goes through :meth:`DwellRuntime.handle` (visits opened
and closed, dead letters), :meth:`close_day_if_due` and
:meth:`feed_stage2_if_due` (stage 2's share, at most every
``stage2_feed_interval_s``). Events are sent as they are made;
:meth:`flush_outputs` waits for all of them, which a checkpoint does first,
so a checkpoint never includes an output that was lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from geo.hotspots import HotspotSet
from kernels import reasons
from kernels._checks import seconds_to_ms
from stream.batches import FixBatch
from stream.engine import RuleSettings, Visits
from stream.events import dead_letter_headers, visit_events, visit_id, visit_opened_events
from stream.policing_day import PolicingCalendar
from stream.producer import partition_of
from stream.pseudonyms import Pseudonymiser
from stream.settings import WorkerSettings
from stream.stage1 import OfficerTracker, TrackerOutput
from stream.visit_batches import visit_batch_messages

log = logging.getLogger(__name__)

# Every fix the rules drop is dead-lettered with its reason (a teleport or a repeated fix is bad input
# a force wants to see, not only count).
DEAD_LETTERED = (reasons.LATE, reasons.OUTSIDE_CRS, reasons.DUPLICATE, reasons.IMPOSSIBLE_SPEED)
DEAD_LETTERED_NAMES = frozenset(reasons.REASON_NAMES[c] for c in DEAD_LETTERED)

Send = Callable[..., Awaitable]
Add = Callable[[str, int, bytes | None, bytes | None, list], None]
VISIT_SLICE = 20_000  # visits turned into events at once


@dataclass
class Stage1Stats:
    batches: int = 0
    fixes: int = 0
    skipped: int = 0
    visits: int = 0
    patrols: int = 0
    rejected: dict | None = None
    checkpoints: int = 0
    silence_closed: int = 0  # visits closed because the partition's event time found the officer silent
    idle_advances: int = 0  # times a quiet partition's event time was moved on by the wall clock


class DwellRuntime:
    """Trackers of the partitions this worker owns, and what they send.

    ``add(topic, partition, key, value, headers)`` appends one record to its
    partition's batch (never waits; the batch's delivery future comes back
    through :meth:`sent`); ``send(topic, key, value, partition, headers)``
    sends one record through the producer's own partitioner (dead letters)
    and returns a future of its delivery.
    """

    def __init__(self, settings: WorkerSettings, hotspots: HotspotSet, send: Send, add: Add) -> None:
        self.settings = settings
        self.hotspots = hotspots
        self.rules: RuleSettings = settings.rules
        self.calendar = PolicingCalendar(self.rules.timezone, self.rules.day_start)
        self._send = send
        self._add = add  # plain calls: a coroutine per event cost more than the append itself
        self.trackers: dict[int, OfficerTracker] = {}
        self.stats = Stage1Stats(rejected={})
        self._hotspot_ids = np.asarray(hotspots.ids, dtype=object)
        # Officer ids in the outputs: as they came, or keyed hashes (the visit and event ids too, as they
        # are made from the id).
        self.pseudonyms = (Pseudonymiser.from_file(settings.pseudonym_key_file, settings.pseudonym_key_version)
                           if settings.pseudonym_key_file else None)
        self._inflight: list = []  # delivery futures not yet known done
        self.delivery_error: BaseException | None = None  # the first output that failed: no checkpoint after it
        self.drain: Callable[[], Awaitable] | None = None  # hands queued outputs over and waits for them
        # Stage 2's share not yet sent, per input partition and stage-2
        # partition, in order: closed visits, day marks, checkpoint marks.
        self._outboxes: dict[int, dict[int, list]] = {}
        self._fed_at: dict[int, float] = {}  # when each input partition's share was last sent
        # Per input partition, since when (monotonic) it has been quiet and the event time it was quiet at:
        # the wall clock moves a quiet partition's event time on (settings.idle_advance_s).
        self._quiet: dict[int, tuple[float, int | None]] = {}
        self._idle_marked: set[int] = set()  # partitions that told stage 2 they hold no day open
        self._partition_of_hotspot = np.array([partition_of(h.encode(), settings.partitions) for h in hotspots.ids],
                                              dtype=np.int64)
        # Events keyed by hot spot go where Kafka's default partitioner would put them,
        # looked up per hot spot instead of hashed per event.
        self._event_partitions: dict[str, np.ndarray] = {}
        self.set_partition_counts({kind: settings.partitions for kind in ("dwell-intervals", "patrol-events")})

    def set_partition_counts(self, counts: dict[str, int]) -> None:
        """The partition counts of the event topics (by topic kind), as the brokers report them."""
        for kind, n in counts.items():
            self._event_partitions[kind] = (self._partition_of_hotspot if n == self.settings.partitions else
                                            np.array([partition_of(h.encode(), n) for h in self.hotspots.ids],
                                                     dtype=np.int64))

    def new_tracker(self, partition: int) -> OfficerTracker:
        tracker = OfficerTracker(self.hotspots, self.rules, partition)
        self._heard_from(tracker)
        return tracker

    def restore_tracker(self, data: bytes) -> OfficerTracker:
        tracker = OfficerTracker.restore(data, self.hotspots, self.rules)
        self._heard_from(tracker)
        return tracker

    def forget(self, partitions) -> None:
        """Partitions revoked: their state lives on in their checkpoints."""
        for p in partitions:
            self.trackers.pop(p, None)
            self._outboxes.pop(p, None)
            self._fed_at.pop(p, None)
            self._quiet.pop(p, None)
            self._idle_marked.discard(p)

    def _heard_from(self, tracker: OfficerTracker, now: float | None = None) -> None:
        """Fixes came in (or the partition was just assigned): it is quiet from now on, at its event time."""
        self._quiet[tracker.partition] = (time.monotonic() if now is None else now, tracker.clock_ms)

    def take_inflight(self) -> list:
        """The delivery futures of every output sent so far (the caller waits for them)."""
        inflight, self._inflight = self._inflight, []
        return inflight

    async def flush_outputs(self) -> None:
        """Wait until every output sent so far is acknowledged (raises if one failed)."""
        inflight, self._inflight = self._inflight, []
        if inflight:
            await asyncio.gather(*inflight)

    # -- one batch ----------------------------------------------------------------------

    async def send(self, topic, key, value, partition, headers) -> None:
        self.sent(await self._send(topic, key, value, partition, headers))

    def sent(self, future) -> None:
        """A delivery future of outputs handed to the producer (a batch of them)."""
        self._inflight.append(future)
        future.add_done_callback(self._note_delivery)

    def _note_delivery(self, future) -> None:
        if self.delivery_error is None and not future.cancelled() and future.exception() is not None:
            self.delivery_error = future.exception()

    async def handle(self, tracker: OfficerTracker, batch: FixBatch) -> TrackerOutput:
        out = tracker.step(batch)
        self.stats.batches += 1
        self.stats.fixes += len(batch)
        self.stats.skipped += out.skipped
        await self._send_visits(tracker, out.visits)
        await self._send_opened(tracker, out.opened)
        await self._dead_letter(batch.partition, batch, out)
        if out.skipped < len(batch):  # fixes came in: the partition is not quiet, whatever their times
            self._heard_from(tracker)
        await self.close_silent(tracker)
        return out

    async def close_silent(self, tracker: OfficerTracker) -> None:
        """Send the visits of officers the partition's event time has found silent (and any fixes their
        released buffers rejected)."""
        out = tracker.close_silent()
        if len(out.visits.start_ms):
            self.stats.silence_closed += len(out.visits.start_ms)
            await self._send_visits(tracker, out.visits)
        if len(out.rejects.row):
            await self._dead_letter(tracker.partition, None, out)

    async def advance_idle(self, tracker: OfficerTracker, now: float, wall_s: float, caught_up: bool = True) -> None:
        """Move a quiet partition's event time on with the wall clock, then close what that closes.

        Quiet means no fix has come in for ``idle_advance_s`` and nothing is left to read (``caught_up``):
        a worker catching up on a backlog is not idle. With live data (time checks on)
        the event time goes to the wall clock less the reorder window; with historical data it moves on
        from the newest fix at the wall clock's pace. A partition that has never had a fix and cannot
        tell the time from the wall clock tells stage 2 once that it holds no day open.
        """
        since, base_ms = self._quiet.get(tracker.partition, (now, None))
        quiet_s = now - since
        if not caught_up or quiet_s < self.settings.idle_advance_s:
            return
        if self.settings.live_event_time:
            clock = int(wall_s * 1000)
            watermark = clock - seconds_to_ms(self.rules.reorder_window_s, "reorder_window_s")
        elif base_ms is None:
            if tracker.partition not in self._idle_marked:
                self._idle_marked.add(tracker.partition)
                outbox = self._outbox(tracker)
                for q in range(self.settings.partitions):
                    outbox.setdefault(q, []).append(["i"])
            return
        else:
            # After idle_advance_s of wall clock nothing older is on its way: the reorder window's hold-back
            # is over, and event time moves on from the newest fix.
            # Rounded, not truncated: the wall clock's float seconds lose a few ns in the subtraction.
            clock = watermark = base_ms + round((quiet_s - self.settings.idle_advance_s) * 1000)
        if tracker.advance_event_time(clock, watermark):
            self.stats.idle_advances += 1
            await self.close_silent(tracker)
            await self.close_day_if_due(tracker)

    async def _send_opened(self, tracker: OfficerTracker, opened) -> None:
        if opened is None or not len(opened.start_ms):
            return
        partitions = self._event_partitions["dwell-intervals"][opened.hotspot].tolist()
        topic = self.settings.topic("dwell-intervals")
        for q, (key, value, headers) in zip(partitions, visit_opened_events(
                self._officer_ids(tracker, opened.officer), self._hotspot_ids[opened.hotspot], opened.start_ms)):
            self._add(topic, q, key, value, headers)

    async def _send_visits(self, tracker: OfficerTracker, visits) -> None:
        n = len(visits.start_ms)
        if n > VISIT_SLICE:
            # A day's close can close every open visit at once: send them a slice at a time and let
            # each slice be delivered first, so a million visits never sit in memory as events.
            for lo in range(0, n, VISIT_SLICE):
                await self._send_visits(tracker, Visits(*(a[lo:lo + VISIT_SLICE] for a in visits)))
                await self.send_visit_batches(tracker)  # stage 2's share too, not a million entries at once
                if self.drain is not None:
                    await self.drain()
            return
        if not n:
            return
        self._note_visit_days(tracker, visits)
        officers = self._officer_ids(tracker, visits.officer)
        hotspot_ids = self._hotspot_ids[visits.hotspot]
        ids = [visit_id(o, h, start) for o, h, start in zip(officers.tolist(), hotspot_ids.tolist(),
                                                              visits.start_ms.tolist())]
        outbox = self._outbox(tracker)
        for vid, h, q, start, end in zip(ids, hotspot_ids.tolist(), self._partition_of_hotspot[visits.hotspot].tolist(),
                                         visits.start_ms.tolist(), visits.end_ms.tolist()):
            outbox.setdefault(q, []).append(["v", vid, h, start, end])
        for kind, i, key, value, headers in visit_events(officers, hotspot_ids, visits.start_ms, visits.end_ms,
                                                         visits.n_fixes, self.rules.min_patrol_s, ids,
                                                         visits.interval_ms, visits.gap_limit_ms):
            self._add(self.settings.topic(kind), int(self._event_partitions[kind][visits.hotspot[i]]), key, value,
                      headers)
            if kind == "patrol-events":
                self.stats.patrols += 1
            else:
                self.stats.visits += 1

    def _officer_ids(self, tracker: OfficerTracker, codes: np.ndarray) -> np.ndarray:
        ids = tracker.registry.ids_of(codes)
        return ids if self.pseudonyms is None else self.pseudonyms.many(ids)

    def _note_visit_days(self, tracker: OfficerTracker, visits) -> None:
        """Add the policing days the visits overlap to the tracker's days with visits."""
        n = len(visits.start_ms)
        # Day boundaries fall on whole minutes, so one calendar lookup per distinct minute.
        minutes, inverse = np.unique(np.concatenate([visits.start_ms, visits.end_ms]) // 60_000, return_inverse=True)
        ordinals = np.array([self.calendar.day_of_ms(int(m) * 60_000).toordinal() for m in minutes.tolist()],
                            np.int64)[inverse]
        first, last = ordinals[:n], ordinals[n:]
        days = set(first.tolist())
        for a, b in zip(first[last > first].tolist(), last[last > first].tolist()):
            days.update(range(a + 1, b + 1))
        tracker.visit_days.update(dt.date.fromordinal(d).isoformat() for d in days)

    async def _dead_letter(self, partition: int, batch: FixBatch | None, out: TrackerOutput) -> None:
        """Dead-letter the fixes the rules rejected: with their record when it is in ``batch``, else (held
        in the reorder buffer since an earlier batch) as a reference to it in the input topic."""
        rej = out.rejects
        for offset, code in zip(rej.row.tolist(), rej.reason.tolist()):
            name = reasons.REASON_NAMES.get(code, "unknown")
            self.stats.rejected[name] = self.stats.rejected.get(name, 0) + 1
            if code not in DEAD_LETTERED:
                continue
            i = int(np.searchsorted(batch.offset, offset)) if batch is not None else 0
            if batch is not None and i < len(batch) and batch.offset[i] == offset:
                value = batch.raw_value(i)
                key = batch.officer_id_bytes(i)
            else:  # not in this batch (held in the reorder buffer): rebuild it
                value, key = json.dumps({"source_offset": offset}).encode(), None
            await self.send(self.settings.topic("location-fixes-dead-letter"), key, value, None,
                             dead_letter_headers(name, self.settings.topic("location-fixes"),
                                                 partition, offset))

    async def close_day_if_due(self, tracker: OfficerTracker) -> None:
        """Close the policing days the partition's event time has passed by the grace.

        Marks are cumulative ("this input partition has closed every day up
        to this one") and say whether the partition had visits in the day, so
        stage 2 emits rows for the same days as the replay: scheduled days
        and days with visits.
        """
        clock_ms = tracker.clock_ms
        if clock_ms is None:
            return
        grace_ms = self.settings.day_close_grace_s * 1000
        if tracker.next_day_close_ms is None:
            # Days wholly before this partition's first fix (or, with no fix yet, its first event time
            # from the wall clock) are closed for it.
            first_ms = tracker.min_event_ms if tracker.min_event_ms is not None else clock_ms
            tracker.next_day_close_ms = self._day_end_after(first_ms)
            first_day = self.calendar.day_of_ms(first_ms)
            await self._mark(tracker, first_day - dt.timedelta(days=1), had_visits=False)
        while clock_ms >= tracker.next_day_close_ms + grace_ms:
            if tracker.released_for_ms != tracker.next_day_close_ms:  # once per boundary
                out = tracker.close_day(tracker.next_day_close_ms)
                await self._send_visits(tracker, out.visits)
                await self._dead_letter(tracker.partition, None, out)  # fixes the released buffer rejected
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
        tracker.version += 1
        outbox = self._outbox(tracker)
        for q in range(self.settings.partitions):
            outbox.setdefault(q, []).append(["m", day.isoformat(), bool(had_visits)])

    def mark_checkpoint(self, tracker: OfficerTracker) -> None:
        """Tell every stage-2 partition that this partition's state up to here is checkpointed: stage 2
        then forgets the visit ids it kept to recognise visits re-sent after a restart."""
        outbox = self._outbox(tracker)
        for q in range(self.settings.partitions):
            outbox.setdefault(q, []).append(["c", int(tracker.last_offset)])

    def _outbox(self, tracker: OfficerTracker) -> dict[int, list]:
        return self._outboxes.setdefault(tracker.partition, {})

    async def feed_stage2_if_due(self, tracker: OfficerTracker, now: float) -> None:
        """Send this partition's share to stage 2 if ``stage2_feed_interval_s`` has passed since it last sent
        one (so the first after a quiet spell goes at once)."""
        if now - self._fed_at.get(tracker.partition, float("-inf")) >= self.settings.stage2_feed_interval_s:
            await self.send_visit_batches(tracker, now)

    async def send_visit_batches(self, tracker: OfficerTracker, now: float | None = None) -> None:
        """Send stage 2 this partition's share now (``now``: ``time.monotonic()`` if not given): per stage-2
        partition one message, or several under the broker's size limit (a day's close can close every open
        visit at once)."""
        outbox = self._outboxes.pop(tracker.partition, None)
        if not outbox:
            return
        self._fed_at[tracker.partition] = time.monotonic() if now is None else now
        key = f"p{tracker.partition}".encode()
        for q, items in sorted(outbox.items()):
            for value in visit_batch_messages(tracker.partition, items):
                self._add(self.settings.topic("visit-batches"), q, key, value, None)

    def _day_end_after(self, ts_ms: int) -> int:
        day = self.calendar.day_of_ms(ts_ms)
        return self.calendar.day_start_ms(day + dt.timedelta(days=1))
