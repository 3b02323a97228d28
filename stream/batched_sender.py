"""Records to known partitions, appended into aiokafka batches and handed over without waiting.

``AIOKafkaProducer.send`` costs several microseconds a record (a future, the
partitioner's pure-Python murmur2 when there is a key, the accumulator);
stage 1 sends about one event per four fixes, so that alone would cap a
worker well below the consumer's rate. Here each record is one append to a
C-built record batch of its (topic, partition).

Handing a batch over must not stall the caller either: aiokafka keeps one
produce request in flight per broker, and ``send_batch`` waits until the
previous batch of the same partition has left (the linger, then the round
trip of the request before it). Awaited once per chunk of fixes, that wait
was most of a worker's latency at a few thousand fixes a second. So
:meth:`BatchedSender.flush` never waits: one hand-over task per (topic,
partition) passes the batches to the producer in order, and while it waits
for the previous one to leave, the caller's records go on into the open
batch, which the task takes next. Under load, batches grow instead of
queueing (fewer, larger produce requests: a broker stores each batch as one
unit). :meth:`BatchedSender.handed_over` gives a future for everything
appended so far being with the producer (checkpoints and bounded memory
need that).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

# Full batches waiting for their hand-over, over all partitions, above which the caller should wait
# (the broker is slower than the input; without a bound the queue would grow with the lag).
MAX_QUEUED_BATCHES = 64


class BatchedSender:
    """Per-(topic, partition) record batches on an aiokafka producer.

    ``on_sent(future)`` receives the delivery future of every batch handed to the producer.
    """

    def __init__(self, producer, on_sent: Callable[[asyncio.Future], None]) -> None:
        self.producer = producer
        self._on_sent = on_sent
        self._open: dict[tuple[str, int], tuple[int, object]] = {}  # (seq, batch) being appended to
        self._full: dict[tuple[str, int], deque] = {}  # full (seq, batch)es, oldest first
        self._made: dict[tuple[str, int], int] = {}  # seq of the newest batch of each partition
        self._handed: dict[tuple[str, int], int] = {}  # seq of the last batch handed to the producer
        self._waiters: dict[tuple[str, int], list] = {}  # (seq, future) done once that batch is handed over
        self._handing: dict[tuple[str, int], asyncio.Task] = {}  # the hand-over task of each busy partition
        self._failure: BaseException | None = None
        self.records = 0
        self.batches = 0

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers) -> None:
        """Append a record (never waits); a full batch is queued for hand-over and a new one started."""
        tp = (topic, partition)
        current = self._open.get(tp)
        if current is None:
            current = self._new_batch(tp)
        if current[1].append(timestamp=None, key=key, value=value, headers=headers) is None:
            self._full.setdefault(tp, deque()).append(current)
            self._hand_over_soon(tp)
            current = self._new_batch(tp)
            if current[1].append(timestamp=None, key=key, value=value, headers=headers) is None:
                raise ValueError(f"a record for {topic} of {len(value or b'')} bytes does not fit in an empty batch")
        self.records += 1

    def flush(self) -> None:
        """Start handing over every open batch (never waits). A partition whose previous batch has not left
        yet keeps its batch open: its hand-over task takes it, with whatever was added meanwhile."""
        if self._failure is not None:
            raise self._failure
        for tp in list(self._open):
            self._hand_over_soon(tp)

    @property
    def backlog(self) -> int:
        """Full batches waiting for their hand-over."""
        return sum(len(q) for q in self._full.values())

    @property
    def congested(self) -> bool:
        return self.backlog > MAX_QUEUED_BATCHES

    def handed_over(self) -> asyncio.Future:
        """Flush; a future done when every record appended so far is with the producer, so that the
        delivery futures of their batches have all gone to ``on_sent`` (it raises if a hand-over failed).
        Records appended later need not be waited for, so a background task can wait on it while the
        caller goes on."""
        self.flush()
        loop = asyncio.get_running_loop()
        waiters = []
        for tp, newest in self._made.items():
            if self._handed.get(tp, 0) < newest:
                future = loop.create_future()
                self._waiters.setdefault(tp, []).append((newest, future))
                waiters.append(future)
        return asyncio.gather(*waiters)

    def _new_batch(self, tp: tuple[str, int]) -> tuple[int, object]:
        seq = self._made[tp] = self._made.get(tp, 0) + 1
        current = self._open[tp] = (seq, self.producer.create_batch())
        return current

    def _next_batch(self, tp: tuple[str, int]) -> tuple[int, object] | None:
        full = self._full.get(tp)
        if full:
            return full.popleft()
        return self._open.pop(tp, None)

    def _hand_over_soon(self, tp: tuple[str, int]) -> None:
        if tp not in self._handing:
            self._handing[tp] = asyncio.get_running_loop().create_task(self._hand_over(tp))

    async def _hand_over(self, tp: tuple[str, int]) -> None:
        try:
            while (nxt := self._next_batch(tp)) is not None:
                seq, batch = nxt
                batch.close()  # nothing else appends to it (aiokafka's send() could, to an open one)
                # Waits here, not in the caller, while this partition's previous batch is still lingering or
                # behind the request in flight.
                future = await self.producer.send_batch(batch, tp[0], partition=tp[1])
                self.batches += 1
                self._handed[tp] = seq
                self._on_sent(future)
                waiting = self._waiters.get(tp)
                if waiting:
                    self._waiters[tp] = [(s, f) for s, f in waiting if s > seq]
                    for s, f in waiting:
                        if s <= seq and not f.done():
                            f.set_result(None)
        except BaseException as exc:  # flush() raises it from now on, and every waiter gets it: the worker stops
            self._failure = exc
            for _, f in self._waiters.pop(tp, []):
                if not f.done():
                    f.cancel() if isinstance(exc, asyncio.CancelledError) else f.set_exception(exc)
            raise
        finally:
            del self._handing[tp]
