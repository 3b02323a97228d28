"""The ingest stage: location-fixes -> fix-batches, one message per partition chunk.

A plain aiokafka consumer (its own group, ``<app id>-ingest``) reads
``location-fixes`` with ``getmany`` (hundreds of thousands of records a
second, where a Faust agent manages about 6,000), decodes and validates each
partition's chunk in one go, dead-letters the bad records with their reason,
and writes the good ones as one ``fix-batches`` message on the same
partition number. Offsets are committed only after those writes are acked:
a crash re-sends a batch, and stage 1 skips the offsets it has applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError

from kernels.reasons import REASON_NAMES
from stream.batches import build_batch
from stream.events import dead_letter_headers
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)

Send = Callable[..., Awaitable]

# Kafka brokers refuse messages over about 1 MB by default.
MAX_BATCH_BYTES = 900_000


@dataclass
class IngestStats:
    records: int = 0
    batches: int = 0
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


def time_bounds_ms(settings: WorkerSettings, now_s: float | None = None) -> tuple[int, int]:
    """Plausible event times right now; (-2**62, 2**62) where a bound is off."""
    now_s = time.time() if now_s is None else now_s
    lo = -(2**62) if settings.max_age_s is None else int((now_s - settings.max_age_s) * 1000)
    hi = 2**62 if settings.max_future_s is None else int((now_s + settings.max_future_s) * 1000)
    return lo, hi


class Ingest:
    """Runs the ingest loop until :meth:`stop`; ``send`` is the app producer's send."""

    def __init__(self, settings: WorkerSettings, send: Send, consumer_kwargs: dict | None = None) -> None:
        self.settings = settings
        self._send = send
        self._consumer_kwargs = consumer_kwargs or {}
        self._stopping = asyncio.Event()
        self.stats = IngestStats()
        self.consumer: AIOKafkaConsumer | None = None
        self.ready = False  # the group has given this consumer its partitions

    async def run(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            s.topic("location-fixes"), bootstrap_servers=s.brokers, group_id=f"{s.app_id}-ingest",
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20, session_timeout_ms=6_000,
            heartbeat_interval_ms=1_000, **self._consumer_kwargs)
        await self.consumer.start()
        try:
            while not self._stopping.is_set():
                records = await self.consumer.getmany(timeout_ms=100, max_records=s.ingest_max_records)
                self.ready = bool(self.consumer.assignment())
                if records:
                    await self._handle(records)
        finally:
            await self.consumer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _handle(self, records) -> None:
        s = self.settings
        lo, hi = time_bounds_ms(s)
        source = s.topic("location-fixes")
        offsets = {}
        futures = []
        for tp, msgs in records.items():
            # The batch carries its oldest record's timestamp (Faust takes seconds), so stage
            # 1 can measure fix-to-output latency.
            for part in self._encoded_parts(tp.partition, msgs, lo, hi, futures, source):
                futures.append(await self._send(s.topic("fix-batches"), f"p{tp.partition}".encode(), part,
                                                tp.partition, msgs[0].timestamp / 1000.0, None))
                self.stats.batches += 1
            self.stats.records += len(msgs)
            offsets[tp] = msgs[-1].offset + 1
        # Every write acknowledged (a failure raises and stops the worker)
        # before the offsets move on.
        await asyncio.gather(*futures)
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: the new owner re-reads from the
            # last commit and stage 1 skips what it already has.
            log.warning("ingest commit failed (%s); the records will be read again", exc)

    def _encoded_parts(self, partition, msgs, lo, hi, futures, source) -> list[bytes]:
        """fix-batches messages for a chunk, halved until each is under MAX_BATCH_BYTES."""
        batch, bad, reason = build_batch(partition, [m.offset for m in msgs], [m.value or b"" for m in msgs],
                                         time_min_ms=lo, time_max_ms=hi)
        data = batch.encode() if len(batch) else b""
        if len(data) > MAX_BATCH_BYTES and len(msgs) > 1:
            half = len(msgs) // 2
            return (self._encoded_parts(partition, msgs[:half], lo, hi, futures, source)
                    + self._encoded_parts(partition, msgs[half:], lo, hi, futures, source))
        reasons = self.stats.dead_letter_reasons
        for i, code in zip(bad.tolist(), reason.tolist()):
            m = msgs[i]
            futures.append(self._dead_letter(m, partition, REASON_NAMES[code], source))
            reasons[REASON_NAMES[code]] = reasons.get(REASON_NAMES[code], 0) + 1
        self.stats.dead_letters += len(bad)
        return [data] if data else []

    async def _dead_letter(self, m, partition, reason, source):
        fut = await self._send(self.settings.topic("location-fixes-dead-letter"), m.key, m.value, None, None,
                               dead_letter_headers(reason, source, partition, m.offset))
        return await fut
