"""Stage 2's state and outputs around the pure :class:`stream.stage2.PartitionPresence`.

One :class:`PartitionPresence` per ``visit-batches`` partition this worker
owns; events go out as batches are applied, their delivery futures kept
until a checkpoint waits for them (:mod:`stream.stage2_consumer` runs the
consumer, the checkpoints and the rebalances).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from stream.settings import WorkerSettings
from stream.stage2 import Applied, PartitionPresence, PresenceModel
from stream.visit_batches import VisitBatch
from stream.tables import Table

log = logging.getLogger(__name__)

# (topic, key, value, partition, headers) -> awaitable giving the delivery future
Send = Callable[..., Awaitable]


@dataclass
class Stage2Stats:
    batches: int = 0
    skipped: int = 0  # visits re-sent by stage 1, applied before
    reread: int = 0  # messages read again after a restore, in the snapshot already
    gaps: int = 0  # messages missing between the restored state and what was read next
    unreadable: int = 0  # visit-batches messages this engine did not write
    visits: int = 0
    late_visits: int = 0  # visits for days already closed (not counted)
    events: int = 0
    checkpoints: int = 0


class PresenceRuntime:
    """Hot spot-day states of the stage-2 partitions this worker owns, and what they send."""

    def __init__(self, settings: WorkerSettings, model: PresenceModel, owned_by: list[list[str]],
                 send: Send | None = None) -> None:
        self.settings = settings
        self.model = model
        self.send = send
        self.owned_by = owned_by
        self.states: dict[int, PartitionPresence] = {}
        self.stats = Stage2Stats()
        self._inflight: list = []  # send futures not yet known delivered
        self.delivery_error: BaseException | None = None  # the first event that failed: no checkpoint after it

    def new_state(self, partition: int) -> PartitionPresence:
        return PartitionPresence(self.model, partition, self.owned_by[partition], self.settings.partitions)

    async def handle(self, state: PartitionPresence, value: bytes, offset: int) -> Applied:
        """Fold the visit-batches message at ``offset`` into ``state`` (nothing if it holds it already)."""
        if offset <= state.applied_offset:
            # Read again: the snapshot includes this message already, and applying it again would
            # count visits twice once they are older than their source's last two checkpoint marks.
            self.stats.reread += 1
            return Applied()
        if state.applied_offset >= 0 and offset > state.applied_offset + 1:
            self.stats.gaps += 1
            log.error("stage-2 partition %d: offsets %d-%d are not in the restored state", state.partition,
                      state.applied_offset + 1, offset - 1)
        applied = state.apply(VisitBatch.decode(value))
        state.applied_offset = offset
        self.stats.batches += 1
        self.stats.skipped += applied.skipped
        self.stats.visits += len(applied.visits)
        self.stats.late_visits += applied.late_visits
        if applied.late_visits:
            log.warning("stage-2 partition %d: %d visit(s) arrived after their day closed; not counted",
                        state.partition, applied.late_visits)
        topic = self.settings.topic("patrol-events")
        for key, body, headers in applied.events:
            delivered = await self.send(topic, key, body, None, headers)
            delivered.add_done_callback(self._note_delivery)
            self._inflight.append(delivered)
        self.stats.events += len(applied.events)
        return applied

    def _note_delivery(self, future) -> None:
        if self.delivery_error is None and not future.cancelled() and future.exception() is not None:
            self.delivery_error = future.exception()

    async def flush_outputs(self) -> None:
        """Wait until every output sent so far is acknowledged (raises if one failed)."""
        inflight, self._inflight = self._inflight, []
        if inflight:
            await asyncio.gather(*inflight)

    def forget(self, partitions) -> None:
        """Partitions revoked: their state lives on in the checkpoints."""
        for p in partitions:
            self.states.pop(p, None)

    def rows(self, day: dt.date, partitions: list[int]) -> Table | None:
        """``day``'s rows for the hot spots of ``partitions`` (None if they have none).

        A partition not (or not yet) owned here shows its hot spots with no presence.
        """
        tables = []
        for q in partitions:
            state = self.states.get(q) or self.new_state(q)
            if state.owned:
                tables.append(state.rows(day, state.owned))
        if not tables:
            return None
        return Table({c: np.concatenate([t[c] for t in tables]) for c in tables[0].columns})
