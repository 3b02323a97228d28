"""Stage 1 on a plain aiokafka consumer: location-fixes in, visits and events out.

One consumer (group ``<app id>-stage1``) reads ``location-fixes`` with
``getmany`` (hundreds of thousands of records a second, where a Faust agent
manages about 6,000), each partition's fetch as one chunk of arrays decoded
from the fetch's bytes (:mod:`stream.raw_fetch`). Each chunk is decoded and
validated in one go (:func:`stream.batches.build_batch_from_blob`; bad
records are dead-lettered with their reason) and goes straight into that
partition's officer tracker: no intermediate topic, no second consumer, no
re-encoding.

Exactly-once state, at-least-once outputs with stable ids:

- every ``checkpoint_interval_s`` the worker copies the state of each
  partition that moved (partitions take turns, so the loop stalls for one
  partition's copy at a time), marks the point on ``visit-batches`` (a ``c`` item,
  so stage 2 knows what could be re-sent), and carries on; in the
  background it waits for every output sent before the copy to be
  acknowledged, writes the copies to ``officer-checkpoints``
  (:mod:`stream.checkpoint_log`) and commits the input offsets. One
  checkpoint is written at a time, and a failed one stops the worker;
- a partition assigned to this worker is restored from its last checkpoint
  and read from the offset after it; one revoked is checkpointed first, so
  a rebalance hands state over without a replay. After a crash the new
  owner replays the fixes since the last checkpoint: the same visits with
  the same ids, which stage 2 recognises.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from geo.hotspots import HotspotSet
from kernels.reasons import REASON_NAMES
from stream.batched_sender import BatchedSender
from stream.batches import build_batch_from_blob
from stream.checkpoint_log import CheckpointStore, KafkaCheckpointLog
from stream.dwell_runtime import DwellRuntime
from stream.events import dead_letter_record
from stream.raw_fetch import RAW_CHUNKS, RawChunk, chunk_of_records, install
from stream.stage1 import encode_arrays
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    records: int = 0  # read from location-fixes
    batches: int = 0  # partition chunks processed
    dead_letters: int = 0  # records that failed decoding or validation
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    first_fix_at: float | None = None  # wall clock of the first chunk processed


def time_bounds_ms(settings: WorkerSettings, now_s: float | None = None) -> tuple[int, int]:
    """Plausible event times right now; (-2**62, 2**62) where a bound is off."""
    now_s = time.time() if now_s is None else now_s
    lo = -(2**62) if settings.max_age_s is None else int((now_s - settings.max_age_s) * 1000)
    hi = 2**62 if settings.max_future_s is None else int((now_s + settings.max_future_s) * 1000)
    return lo, hi


# (fixes, seconds of work, seconds from the oldest record's timestamp to now)
BatchHook = Callable[[int, float, float | None], None]


class Stage1Consumer:
    """Runs stage 1 until :meth:`stop`."""

    def __init__(self, settings: WorkerSettings, hotspots: HotspotSet, client_kwargs: dict | None = None) -> None:
        self.settings = settings
        self.runtime = DwellRuntime(settings, hotspots, self._send, self._add)
        self.runtime.drain = self._drain
        self.stats = IngestStats()
        self.on_batch: BatchHook | None = None
        self.ready = False  # the group has given this consumer its partitions
        self._client_kwargs = client_kwargs or {}
        self._stopping = asyncio.Event()
        # Chunks and rebalances take turns: a revoked partition is
        # checkpointed after the chunk in hand, never in the middle of it.
        self._lock = asyncio.Lock()
        self._checkpointed_version: dict[int, int] = {}  # tracker.version of each partition's last snapshot
        self._checkpointed_at: dict[int, float] = {}  # when each partition's last snapshot was taken (monotonic)
        self._last_checkpoint = time.monotonic()
        self._writing: asyncio.Task | None = None  # the checkpoint being written
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.batches: BatchedSender | None = None
        self.store: CheckpointStore | None = None
        self.rebalance: Rebalance | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        s = self.settings
        common = dict(bootstrap_servers=s.brokers, **self._client_kwargs)
        self.producer = AIOKafkaProducer(linger_ms=s.producer_linger_ms, max_request_size=4 << 20,
                                         max_batch_size=1 << 20, acks="all", **common)
        # Checkpoints go through a producer of their own: aiokafka keeps one request in flight per broker
        # and producer, and megabytes of state must not hold the events up.
        checkpoint_producer = AIOKafkaProducer(linger_ms=0, max_request_size=4 << 20, max_batch_size=1 << 20,
                                               acks="all", **common)
        reader = AIOKafkaConsumer(enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
                                  fetch_max_bytes=64 << 20, **common)
        # Fetched fixes come as arrays decoded from the fetch's bytes, not as a Python object a record.
        install()
        self.consumer = AIOKafkaConsumer(
            group_id=f"{s.app_id}-stage1", enable_auto_commit=False, auto_offset_reset="earliest",
            value_deserializer=RAW_CHUNKS,
            fetch_max_wait_ms=s.fetch_max_wait_ms, max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
            # Joining a group on the embedded broker takes half the session timeout.
            session_timeout_ms=6_000, heartbeat_interval_ms=1_000, **common)
        await self.producer.start()
        await checkpoint_producer.start()
        await reader.start()
        try:
            self.batches = BatchedSender(self.producer, self.runtime.sent)
            self.runtime.set_partition_counts({kind: len(await self.producer.partitions_for(s.topic(kind)))
                                               for kind in ("dwell-intervals", "patrol-events")})
            self.store = CheckpointStore(KafkaCheckpointLog(s.topic("officer-checkpoints"), checkpoint_producer,
                                                            reader))
            await self.consumer.start()
            self.rebalance = Rebalance(self)
            self.consumer.subscribe([s.topic("location-fixes")], listener=self.rebalance)
            try:
                await self._loop()
                # Stopped: hand the state over. After an error it may be half-advanced: the last checkpoint stands.
                async with self._lock:
                    await self._checkpoint_safely(list(self.runtime.trackers), "shutdown")
            finally:
                await self.consumer.stop()
        finally:
            await reader.stop()
            await checkpoint_producer.stop()
            await self.producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _loop(self) -> None:
        s = self.settings
        while not self._stopping.is_set():
            records = await self.consumer.getmany(timeout_ms=100, max_records=s.ingest_max_records)
            self.rebalance.raise_failure()
            self.ready = bool(self.consumer.assignment())
            if self._writing is not None and self._writing.done():
                self._writing.result()  # a failed checkpoint stops the worker; its restart replays from the last
                self._writing = None
            async with self._lock:
                if records:
                    await self._process(records)
                await self._advance_idle()
                # Also when idle, and for partitions that got nothing this time: nothing waits for company long.
                await self._feed_stage2_due()
                if self._writing is None:
                    due = self.due_for_checkpoint(time.monotonic())
                    if due is not None:
                        self._writing = await self._start_checkpoint([due])

    # -- chunks -----------------------------------------------------------------------

    async def _send(self, topic, key, value, partition, headers):
        # Dead letters (rare): the producer's partitioner, as for the input.
        return await self.producer.send(topic, value=value, key=key, partition=partition, headers=headers)

    def _add(self, topic, partition, key, value, headers) -> None:
        self.batches.add(topic, partition, key, value, headers)

    async def _drain(self) -> None:
        await self.batches.handed_over()
        await self.runtime.flush_outputs()
        _release_free_memory()

    async def _process(self, records) -> None:
        s = self.settings
        lo, hi = time_bounds_ms(s)
        runtime = self.runtime
        if self.stats.first_fix_at is None:
            self.stats.first_fix_at = time.time()
        for tp, items in records.items():
            tracker = runtime.trackers.get(tp.partition)
            if tracker is None:
                continue  # revoked since the fetch: the new owner reads these
            # RawChunks (stream.raw_fetch), or ConsumerRecords where aiokafka could not be hooked.
            chunks = items if isinstance(items[0], RawChunk) else [chunk_of_records(items)]
            for chunk in chunks:
                # A fetch can hold 8 MiB of a partition: worked through in bounded steps.
                for piece in chunk.slices(s.ingest_max_records):
                    if len(piece):
                        await self._process_chunk(tracker, piece, lo, hi)
        self.batches.flush()
        if self.batches.congested:  # the broker is behind: wait for it rather than queue without bound
            await self.batches.handed_over()

    async def _process_chunk(self, tracker, chunk: RawChunk, lo: int, hi: int) -> None:
        runtime = self.runtime
        started = time.perf_counter()
        batch, bad, reason = build_batch_from_blob(tracker.partition, chunk.offset, chunk.value_blob,
                                                   chunk.value_bounds, time_min_ms=lo, time_max_ms=hi)
        if len(bad) and chunk.offset[bad[0]] <= tracker.last_offset:
            # Read before (a fetch overlapping the seek on assignment): dead-lettered then already.
            keep = chunk.offset[bad] > tracker.last_offset
            bad, reason = bad[keep], reason[keep]
        await self._dead_letter(tracker.partition, chunk, bad, reason)
        if len(batch):
            await runtime.handle(tracker, batch)
        elif chunk.offset[-1] > tracker.last_offset:
            tracker.last_offset = int(chunk.offset[-1])  # a chunk of bad records only: read past it
            tracker.version += 1
        await runtime.close_day_if_due(tracker)
        self.stats.records += len(chunk)
        self.stats.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - started, time.time() - chunk.timestamp_ms[0] / 1000.0)

    async def _advance_idle(self) -> None:
        """Let the wall clock move on the event time of partitions that are quiet and fully read."""
        now, wall = time.monotonic(), time.time()
        topic = self.settings.topic("location-fixes")
        for tracker in list(self.runtime.trackers.values()):
            end = self.consumer.highwater(TopicPartition(topic, tracker.partition))
            await self.runtime.advance_idle(tracker, now, wall, caught_up=end is None or tracker.last_offset + 1 >= end)

    async def _feed_stage2_due(self) -> None:
        now = time.monotonic()
        for tracker in list(self.runtime.trackers.values()):
            await self.runtime.feed_stage2_if_due(tracker, now)
        self.batches.flush()

    async def _dead_letter(self, partition, chunk: RawChunk, bad, reason) -> None:
        if not len(bad):
            return
        source = self.settings.topic("location-fixes")
        topic = self.settings.topic("location-fixes-dead-letter")
        reasons = self.stats.dead_letter_reasons
        for i, code in zip(bad.tolist(), reason.tolist()):
            name = REASON_NAMES[code]
            key, value, headers = dead_letter_record(chunk.key(i), chunk.value(i), name, source, partition,
                                                     int(chunk.offset[i]))
            await self.runtime.send(topic, key, value, None, headers)
            reasons[name] = reasons.get(name, 0) + 1
        self.stats.dead_letters += len(bad)

    # -- checkpoints and rebalances ---------------------------------------------------

    def due_for_checkpoint(self, now: float) -> int | None:
        """The partition to checkpoint now, if any. Partitions take turns, one every ``checkpoint_interval_s``
        divided by their number, the one whose snapshot is oldest first (among those that moved): each copy
        stalls the loop for one partition's state, not all of them at once, and each partition is still
        checkpointed every ``checkpoint_interval_s``."""
        interval = self.settings.checkpoint_interval_s
        if not self.runtime.trackers or now - self._last_checkpoint < interval / len(self.runtime.trackers):
            return None
        due = [(self._checkpointed_at.get(p, float("-inf")), p) for p, t in self.runtime.trackers.items()
               if t.version != self._checkpointed_version.get(p)]
        oldest = min(due, default=None)
        return oldest[1] if oldest is not None and now - oldest[0] >= interval else None

    async def _start_checkpoint(self, partitions: list[int]) -> asyncio.Task | None:
        """Copy the state of the partitions that moved since their last snapshot, mark the point for stage 2,
        and write the copies in the background; returns that task (None if nothing moved)."""
        self._last_checkpoint = time.monotonic()
        runtime = self.runtime
        moved = [p for p in partitions if p in runtime.trackers
                 and runtime.trackers[p].version != self._checkpointed_version.get(p)]
        if not moved:
            return None
        # A checkpoint never includes an output that was lost: it is written once every output queued
        # before the copy below has been delivered.
        before_copy = self.batches.handed_over()
        copies = []
        for p in moved:
            tracker = runtime.trackers[p]
            copies.append((p, tracker.snapshot_arrays(), tracker.last_offset))
            self._checkpointed_version[p] = tracker.version
            self._checkpointed_at[p] = self._last_checkpoint
            runtime.mark_checkpoint(tracker)
            await runtime.send_visit_batches(tracker)
        self.batches.flush()
        _release_free_memory()
        return asyncio.create_task(self._write_checkpoints(before_copy, copies))

    async def _write_checkpoints(self, before_copy: asyncio.Future, copies: list) -> None:
        await before_copy
        # Every output queued before the copy now has its delivery future among these (and maybe later ones).
        outputs = self.runtime.take_inflight()
        if outputs:
            await asyncio.gather(*outputs)
        if self.runtime.delivery_error is not None:  # also one that another waiter took and saw fail
            raise self.runtime.delivery_error
        for p, arrays, offset in copies:
            # Encoding and hashing run beside the event loop (numpy and hashlib release the GIL).
            data = await asyncio.to_thread(encode_arrays, arrays)
            await self.store.write(p, data, offset)
            self.runtime.stats.checkpoints += 1
        topic = self.settings.topic("location-fixes")
        offsets = {TopicPartition(topic, p): offset + 1 for p, _, offset in copies if offset >= 0}
        if offsets:
            try:
                # Offsets only show the group's lag: restores seek to the checkpoint itself.
                await self.consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                log.warning("stage-1 offset commit failed (%s); the checkpoints are written", exc)

    async def _checkpoint(self, partitions: list[int]) -> None:
        """Checkpoint now and wait until it is written (rebalances, shutdown)."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing
        task = await self._start_checkpoint(partitions)
        if task is not None:
            await task

    async def _checkpoint_safely(self, partitions: list[int], why: str) -> None:
        try:
            await self._checkpoint(partitions)
        except Exception:  # the previous checkpoint still stands; the next owner replays from it
            log.exception("stage-1 checkpoint on %s failed", why)

    async def on_revoked(self, revoked) -> None:
        topic = self.settings.topic("location-fixes")
        async with self._lock:
            partitions = [tp.partition for tp in revoked if tp.topic == topic]
            await self._checkpoint_safely([p for p in partitions if p in self.runtime.trackers], "revoke")
            self.runtime.forget(partitions)
            for p in partitions:
                self._checkpointed_version.pop(p, None)
                self._checkpointed_at.pop(p, None)
            self.ready = False

    async def on_assigned(self, assigned) -> None:
        topic = self.settings.topic("location-fixes")
        async with self._lock:
            for tp in assigned:
                if tp.topic != topic or tp.partition in self.runtime.trackers:
                    continue
                checkpoint = await self.store.load(tp.partition)
                if checkpoint is None:
                    tracker = self.runtime.new_tracker(tp.partition)
                    await self.consumer.seek_to_beginning(tp)
                else:
                    tracker = self.runtime.restore_tracker(checkpoint.data)
                    log.info("partition %d restored from checkpoint at input offset %d", tp.partition,
                             tracker.last_offset)
                    self.consumer.seek(tp, tracker.last_offset + 1)
                self._checkpointed_version[tp.partition] = tracker.version
                self.runtime.trackers[tp.partition] = tracker


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it after bursts: a day's close can make a
    million visits' worth of short-lived objects at once)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _LIBC.malloc_trim  # noqa: B018 (glibc only)
except (OSError, AttributeError):
    _LIBC = None


class Rebalance(ConsumerRebalanceListener):
    """Hands a group's rebalances to the stage that owns the consumer (``on_revoked``, ``on_assigned``).

    aiokafka only logs a listener's exception and carries on, which would leave a partition assigned
    but never restored (its records skipped for good); the error is kept in ``failed`` instead, and
    the stage's loop raises it, so the worker stops and its restart tries again.
    """

    def __init__(self, owner) -> None:
        self.owner = owner
        self.failed: BaseException | None = None

    async def on_partitions_revoked(self, revoked) -> None:
        try:
            await self.owner.on_revoked(revoked)
        except Exception as exc:
            self.failed = exc

    async def on_partitions_assigned(self, assigned) -> None:
        try:
            await self.owner.on_assigned(assigned)
        except Exception as exc:
            self.failed = exc

    def raise_failure(self) -> None:
        if self.failed is not None:
            raise RuntimeError("a rebalance could not be completed") from self.failed
