"""Stage 1's checkpoints on a compacted Kafka topic, co-partitioned with ``location-fixes``.

The officer state of input partition ``p`` is snapshotted into partition
``p`` of ``officer-checkpoints``: the snapshot cut into pieces under Kafka's
message limit, then a manifest naming the pieces by offset, with their
sha256 and the last input offset the snapshot includes. Two generations of
piece keys alternate, so compaction never removes a piece that the last
complete manifest names, and a crash mid-write leaves that manifest whole.

Restoring reads the tail of the partition back to the last manifest, then
its pieces, so it costs the size of one snapshot however long the topic's
history (and whether or not the broker has compacted it yet).

:class:`CheckpointStore` is pure protocol over a :class:`CheckpointLog`
(append and read records of one partition); :class:`KafkaCheckpointLog` is
that log on a real topic, and the tests use an in-memory one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

PIECE_BYTES = 512 << 10  # pieces stay well under Kafka's 1 MB message limit
TAIL_RECORDS = 64  # how far back the first look for the last manifest reaches


class CheckpointError(RuntimeError):
    pass


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes
    value: bytes | None


class CheckpointLog(Protocol):
    async def append(self, partition: int, key: bytes, value: bytes | None) -> Awaitable[int]:
        """Queue a record; the returned awaitable gives its offset once it is durable."""

    async def bounds(self, partition: int) -> tuple[int, int]:
        """(first offset, next offset) of the partition."""

    async def read(self, partition: int, start: int, end: int) -> list[Record]:
        """Records with ``start <= offset < end`` still in the log, in order."""


def manifest_key(partition: int) -> bytes:
    return f"p{partition}".encode()


def piece_key(partition: int, generation: int, i: int) -> bytes:
    return f"p{partition}/g{generation}/{i}".encode()


@dataclass(frozen=True)
class Checkpoint:
    data: bytes
    input_offset: int  # the last input offset the snapshot includes (-1: none)
    generation: int


class CheckpointStore:
    """Write and restore partition snapshots on a :class:`CheckpointLog`."""

    def __init__(self, log: CheckpointLog, piece_bytes: int = PIECE_BYTES) -> None:
        self.log = log
        self.piece_bytes = piece_bytes
        self._generation: dict[int, int] = {}
        self._pieces: dict[tuple[int, int], int] = {}  # (partition, generation) -> pieces written
        self.written = 0
        self.bytes_written = 0

    async def write(self, partition: int, data: bytes, input_offset: int) -> None:
        """Write a snapshot; returns once its manifest is durable."""
        gen = 1 - self._generation.get(partition, 1)
        pieces = [data[i:i + self.piece_bytes] for i in range(0, len(data), self.piece_bytes)] or [b""]
        pending = [await self.log.append(partition, piece_key(partition, gen, i), piece)
                   for i, piece in enumerate(pieces)]
        # Pieces left from a longer snapshot of this generation: tombstones, so compaction drops them.
        for i in range(len(pieces), self._pieces.get((partition, gen), 0)):
            pending.append(await self.log.append(partition, piece_key(partition, gen, i), None))
        offsets = [await p for p in pending][:len(pieces)]
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())  # off the event loop
        manifest = {"generation": gen, "offsets": offsets, "bytes": len(data), "input_offset": int(input_offset),
                    "sha256": digest}
        await (await self.log.append(partition, manifest_key(partition), json.dumps(manifest).encode()))
        self._generation[partition] = gen
        self._pieces[(partition, gen)] = len(pieces)
        self.written += 1
        self.bytes_written += len(data)

    async def load(self, partition: int) -> Checkpoint | None:
        """The partition's last complete snapshot, or None; raises :class:`CheckpointError` if damaged."""
        first, end = await self.log.bounds(partition)
        manifest = None
        window = TAIL_RECORDS
        hi = end
        while manifest is None and hi > first:
            lo = max(first, hi - window)
            for rec in await self.log.read(partition, lo, hi):
                if rec.key == manifest_key(partition) and rec.value:
                    manifest = rec
            hi, window = lo, window * 4
        if manifest is None:
            return None
        meta = json.loads(manifest.value)
        offsets = [int(o) for o in meta["offsets"]]
        found = {}
        if offsets:
            for rec in await self.log.read(partition, min(offsets), max(offsets) + 1):
                found[rec.offset] = rec
        missing = [o for o in offsets if o not in found]
        if missing:
            raise CheckpointError(f"checkpoint of partition {partition} names pieces at offsets {missing[:5]} "
                                  "that are not in the log")
        data = b"".join(found[o].value or b"" for o in offsets)
        if len(data) != meta["bytes"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise CheckpointError(f"checkpoint of partition {partition} (generation {meta['generation']}) does not "
                                  "match its manifest")
        gen = int(meta["generation"])
        self._generation[partition] = gen
        self._pieces[(partition, gen)] = max(self._pieces.get((partition, gen), 0), len(offsets))
        return Checkpoint(data, int(meta["input_offset"]), gen)


class MemoryCheckpointLog:
    """A :class:`CheckpointLog` in memory (tests, and the file replay's dry runs)."""

    def __init__(self) -> None:
        self.records: dict[int, list[Record]] = {}

    async def append(self, partition: int, key: bytes, value: bytes | None):
        log = self.records.setdefault(partition, [])
        offset = log[-1].offset + 1 if log else 0
        log.append(Record(offset, key, value))
        durable = asyncio.get_running_loop().create_future()
        durable.set_result(offset)
        return durable

    async def bounds(self, partition: int) -> tuple[int, int]:
        log = self.records.get(partition, [])
        return (log[0].offset, log[-1].offset + 1) if log else (0, 0)

    async def read(self, partition: int, start: int, end: int) -> list[Record]:
        return [r for r in self.records.get(partition, []) if start <= r.offset < end]


class KafkaCheckpointLog:
    """The checkpoint topic through an aiokafka producer and a group-less consumer (manual assignment)."""

    def __init__(self, topic: str, producer, consumer) -> None:
        self.topic = topic
        self.producer = producer
        self.consumer = consumer

    async def append(self, partition: int, key: bytes, value: bytes | None):
        future = await self.producer.send(self.topic, value=value, key=key, partition=partition)

        async def durable() -> int:
            return (await future).offset

        return durable()

    def _tp(self, partition: int):
        from aiokafka import TopicPartition

        return TopicPartition(self.topic, partition)

    async def bounds(self, partition: int) -> tuple[int, int]:
        tp = self._tp(partition)
        first = (await self.consumer.beginning_offsets([tp]))[tp]
        end = (await self.consumer.end_offsets([tp]))[tp]
        return first, end

    async def read(self, partition: int, start: int, end: int) -> list[Record]:
        tp = self._tp(partition)
        if start >= end:
            return []
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        out: list[Record] = []
        idle = 0
        while True:
            batch = await self.consumer.getmany(tp, timeout_ms=1000)
            msgs = batch.get(tp, [])
            idle = 0 if msgs else idle + 1
            if idle > 30:
                raise CheckpointError(f"{self.topic} partition {partition}: no records between offsets "
                                      f"{await self.consumer.position(tp)} and {end} after 30 s")
            for m in msgs:
                if m.offset >= end:
                    return out
                out.append(Record(m.offset, m.key or b"", m.value))
            # Compaction leaves gaps: done once the consumer has passed ``end``.
            if await self.consumer.position(tp) >= end:
                return out
