"""Stage 2's glue between Faust and the pure :class:`stream.stage2.PartitionPresence`.

State in memory per ``visit-batches`` partition, events sent as batches are
applied, and every 2 s (once every event sent so far is acknowledged) a
snapshot goes to a Faust table; only then are the input messages acked. A
restarted worker restores the snapshot and re-reads what came after it;
visits re-sent by stage 1 are skipped by their ids
(:class:`stream.stage2.PartitionPresence`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from stream.checkpoints import CheckpointedStage
from stream.settings import WorkerSettings
from stream.stage2 import Applied, PartitionPresence, PresenceModel, VisitBatch
from stream.tables import Table

log = logging.getLogger(__name__)

Send = Callable[..., Awaitable]


@dataclass
class Stage2Stats:
    batches: int = 0
    skipped: int = 0  # visits re-sent by stage 1, applied before
    reread: int = 0  # messages read again after a restore, in the snapshot already
    visits: int = 0
    late_visits: int = 0  # visits for days already closed (not counted)
    events: int = 0
    checkpoints: int = 0


class PresenceRuntime(CheckpointedStage):
    """Hot spot-day states of the stage-2 partitions this worker owns, and what they send."""

    def __init__(self, settings: WorkerSettings, model: PresenceModel, send: Send,
                 owned_by: list[list[str]]) -> None:
        super().__init__(settings.checkpoint_interval_s)
        self.settings = settings
        self.model = model
        self._send = send
        self.owned_by = owned_by
        self.states: dict[int, PartitionPresence] = {}
        self.stats = Stage2Stats()

    def state(self, partition: int, table) -> PartitionPresence:
        state = self.states.get(partition)
        if state is None:
            state = PartitionPresence(self.model, partition, self.owned_by[partition], self.settings.partitions)
            data = self.checkpoints.load(table, partition)
            if data is not None:
                state.restore(data)
                log.info("stage-2 partition %d restored (%d open hot spot-days)", partition, len(state.days))
            self.states[partition] = state
        return state

    async def handle(self, state: PartitionPresence, value: bytes, offset: int) -> Applied:
        """Fold the visit-batches message at ``offset`` into ``state`` (nothing if it holds it already)."""
        if offset <= state.applied_offset:
            # Read again after a restore: the group's committed offset lags the snapshot, which
            # includes this message already (Faust commits acks every commit interval, and not on a
            # revoke). Applying it again would count visits twice once they are older than the
            # source's last two checkpoint marks.
            self.stats.reread += 1
            return Applied()
        if state.applied_offset >= 0 and offset > state.applied_offset + 1:
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
            self._inflight.append(await self._send(topic, key, body, None, None, headers))
        self.stats.events += len(applied.events)
        return applied

    def _states(self) -> dict:
        return self.states

    def rows(self, day: dt.date, partitions: list[int]) -> Table | None:
        """``day``'s rows for the hot spots of ``partitions`` (None if they have none).

        A partition with no state here yet (no message since it was assigned)
        shows its hot spots with no presence; its state is not loaded here,
        outside the agent, where the table may still be recovering.
        """
        tables = []
        for q in partitions:
            state = self.states.get(q) or PartitionPresence(self.model, q, self.owned_by[q], self.settings.partitions)
            if state.owned:
                tables.append(state.rows(day, state.owned))
        if not tables:
            return None
        return Table({c: np.concatenate([t[c] for t in tables]) for c in tables[0].columns})
