"""Stage 2 on a plain aiokafka consumer: visit-batches in, patrol events and hot spot-day rows out.

Stage 2 was a Faust agent until the crash campaign (tests/chaos/campaign.py)
showed hot spot-days short of visits: after a recovery Faust's consumer can
count a message as read without handing it to the agent (it treats a gap
between its committed offset and the first message it sees as acked), and
seeking back behind Faust's offset bookkeeping does not take. So stage 2
reads like stage 1 (:mod:`stream.stage1_consumer`), with its own group
``<app id>-stage2``, and owns its positions:

- a partition assigned to this worker is restored from its last checkpoint
  on ``presence-checkpoints`` (co-partitioned with ``visit-batches``, written
  by the same :class:`stream.checkpoint_log.CheckpointStore` as stage 1's)
  and read from the message after the last one the snapshot holds;
- every ``checkpoint_interval_s`` each partition that moved is snapshotted
  once every event it sent is acknowledged, so a checkpoint never includes
  an event that was lost; then the offsets are committed (they only show the
  group's lag: restores seek to the checkpoint itself);
- a revoked partition is checkpointed first, so a rebalance hands its state
  over without a replay. After a crash the next owner re-reads the messages
  since the last checkpoint; the events they make again carry the same ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from stream.checkpoint_log import CheckpointStore, KafkaCheckpointLog
from stream.presence_runtime import PresenceRuntime
from stream.settings import WorkerSettings
from stream.stage1_consumer import Rebalance
from stream.stage2 import Applied

log = logging.getLogger(__name__)

MAX_MESSAGES = 2_000  # visit-batches messages per poll (each holds many visits)
COMMIT_TIMEOUT_S = 10.0  # the committed offsets only show the group's lag: restores seek to the checkpoint


class Stage2Consumer:
    """Runs stage 2 until :meth:`stop`; ``on_applied`` sees what each message produced (metrics, board)."""

    def __init__(self, settings: WorkerSettings, runtime: PresenceRuntime, client_kwargs: dict | None = None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.on_applied: Callable[[Applied], None] | None = None
        self.ready = False  # the group has given this consumer its partitions
        self._client_kwargs = client_kwargs or {}
        self._stopping = asyncio.Event()
        # Messages and rebalances take turns: a revoked partition is checkpointed between messages.
        self._lock = asyncio.Lock()
        self._checkpointed_offset: dict[int, int] = {}  # visit-batches offset of each partition's last snapshot
        self._checkpointed_at: dict[int, float] = {}  # when it was taken (monotonic)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.store: CheckpointStore | None = None
        self.rebalance: Rebalance | None = None

    @property
    def partitions(self) -> list[int]:
        """The visit-batches partitions this worker holds now."""
        return sorted(self.runtime.states)

    async def run(self) -> None:
        s = self.settings
        common = dict(bootstrap_servers=s.brokers, **self._client_kwargs)
        self.producer = AIOKafkaProducer(linger_ms=5, max_request_size=4 << 20, acks="all", **common)
        reader = AIOKafkaConsumer(enable_auto_commit=False, **common)  # reads checkpoints back (no group)
        self.consumer = AIOKafkaConsumer(
            group_id=f"{s.app_id}-stage2", enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=s.stage2_fetch_max_wait_ms,
            # Joining a group on the embedded broker takes half the session timeout.
            session_timeout_ms=6_000, heartbeat_interval_ms=1_000, **common)
        await self.producer.start()
        await reader.start()
        try:
            self.runtime.send = self._send
            self.store = CheckpointStore(KafkaCheckpointLog(s.topic("presence-checkpoints"), self.producer, reader))
            await self.consumer.start()
            self.rebalance = Rebalance(self)
            self.consumer.subscribe([s.topic("visit-batches")], listener=self.rebalance)
            try:
                await self._loop()
                # Stopped: hand the state over. After an error it may be half-advanced: the last checkpoint stands.
                async with self._lock:
                    await self._checkpoint_safely(self.partitions, "shutdown")
            finally:
                await self.consumer.stop()
        finally:
            await reader.stop()
            await self.producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _send(self, topic, key, value, partition, headers):
        return await self.producer.send(topic, value=value, key=key, partition=partition, headers=headers)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            records = await self.consumer.getmany(timeout_ms=100, max_records=MAX_MESSAGES)
            self.rebalance.raise_failure()
            self.ready = bool(self.consumer.assignment())
            async with self._lock:
                for tp, messages in records.items():
                    await self.process(tp.partition, [(m.offset, m.value) for m in messages])
                await self.checkpoint(self.due_for_checkpoint(time.monotonic()))

    async def process(self, partition: int, messages: list[tuple[int, bytes | None]]) -> None:
        """Apply a partition's messages ``(offset, value)`` in order (nothing if it was revoked since)."""
        state = self.runtime.states.get(partition)
        if state is None:
            return  # revoked since the fetch: the new owner reads these
        for offset, value in messages:
            try:
                applied = await self.runtime.handle(state, value or b"", offset)
            except (ValueError, KeyError, TypeError, IndexError, msgspec.DecodeError) as exc:
                # A record this engine did not write: logged and counted, never a crash.
                self.runtime.stats.unreadable += 1
                log.error("visit-batches partition %d offset %d: unreadable: %r", partition, offset, exc)
                state.applied_offset = max(state.applied_offset, offset)
                continue
            if self.on_applied is not None:
                self.on_applied(applied)

    # -- checkpoints and rebalances ---------------------------------------------------

    def due_for_checkpoint(self, now: float) -> list[int]:
        """Partitions that moved and whose last snapshot is ``checkpoint_interval_s`` old."""
        interval = self.settings.checkpoint_interval_s
        return [p for p, state in self.runtime.states.items()
                if state.applied_offset != self._checkpointed_offset.get(p)
                and now - self._checkpointed_at.get(p, float("-inf")) >= interval]

    async def checkpoint(self, partitions: list[int]) -> None:
        """Snapshot these partitions once every event sent so far is acknowledged, then commit their offsets."""
        if not partitions:
            return
        await self.runtime.flush_outputs()  # a checkpoint never includes an event that was lost
        if self.runtime.delivery_error is not None:  # also one that an earlier flush saw fail
            raise self.runtime.delivery_error
        topic = self.settings.topic("visit-batches")
        offsets = {}
        for p in partitions:
            state = self.runtime.states[p]
            await self.store.write(p, state.snapshot(), state.applied_offset)
            self._checkpointed_offset[p] = state.applied_offset
            self._checkpointed_at[p] = time.monotonic()
            self.runtime.stats.checkpoints += 1
            if state.applied_offset >= 0:
                offsets[TopicPartition(topic, p)] = state.applied_offset + 1
        if offsets:
            try:
                # Bounded: aiokafka retries a commit while the coordinator is away, and this holds the lock.
                await asyncio.wait_for(self.consumer.commit(offsets), COMMIT_TIMEOUT_S)
            except (CommitFailedError, KafkaError, asyncio.TimeoutError) as exc:
                log.warning("stage-2 offset commit failed (%r); the checkpoints are written", exc)

    async def _checkpoint_safely(self, partitions: list[int], why: str) -> None:
        moved = [p for p in partitions if p in self.runtime.states
                 and self.runtime.states[p].applied_offset != self._checkpointed_offset.get(p)]
        try:
            await self.checkpoint(moved)
        except Exception:  # the previous checkpoint still stands; the next owner re-reads from it
            log.exception("stage-2 checkpoint on %s failed", why)

    async def on_revoked(self, revoked) -> None:
        topic = self.settings.topic("visit-batches")
        async with self._lock:
            partitions = [tp.partition for tp in revoked if tp.topic == topic]
            await self._checkpoint_safely(partitions, "revoke")
            self.runtime.forget(partitions)
            for p in partitions:
                self._checkpointed_offset.pop(p, None)
                self._checkpointed_at.pop(p, None)
            self.ready = False

    async def on_assigned(self, assigned) -> None:
        topic = self.settings.topic("visit-batches")
        async with self._lock:
            for tp in assigned:
                if tp.topic != topic or tp.partition in self.runtime.states:
                    continue
                state = self.runtime.new_state(tp.partition)
                checkpoint = await self.store.load(tp.partition)
                if checkpoint is not None:
                    state.restore(checkpoint.data)
                    log.info("stage-2 partition %d restored at visit-batches offset %d (%d open hot spot-days)",
                             tp.partition, state.applied_offset, len(state.days))
                if state.applied_offset >= 0:
                    self.consumer.seek(tp, state.applied_offset + 1)
                else:
                    await self.consumer.seek_to_beginning(tp)
                self._checkpointed_offset[tp.partition] = state.applied_offset
                self._checkpointed_at[tp.partition] = time.monotonic()
                self.runtime.states[tp.partition] = state
