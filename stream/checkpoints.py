"""Snapshots of a partition's state in a Faust table (its changelog topic), written safely.

A snapshot is cut into pieces under Kafka's message limit; two generations
alternate, and a manifest (generation, pieces, sha256) is written last on
the same changelog partition, so a crash mid-write leaves the previous
snapshot whole and named. Stage 2 keeps its hot spot-days this way (stage 1
has its own topic and consumer: :mod:`stream.checkpoint_log`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable

CHUNK_BYTES = 512 << 10  # pieces stay well under Kafka's 1 MB message limit


def manifest_key(partition: int) -> bytes:
    return f"p{partition}".encode()


def chunk_key(partition: int, generation: int, i: int) -> bytes:
    # Two generations alternate: a checkpoint cut short by a crash never
    # overwrites the pieces of the last complete one, which its manifest names.
    return f"p{partition}/g{generation}/{i}".encode()


class CheckpointError(RuntimeError):
    pass


class Checkpoints:
    """Snapshots of partitions in ``table``, at most every ``interval_s`` seconds each."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._generation: dict[int, int] = {}
        self._last: dict[int, float] = {}
        self.written = 0

    def load(self, table, partition: int) -> bytes | None:
        """The partition's last complete snapshot, or None; raises if it is damaged."""
        self._last[partition] = time.monotonic()
        manifest = table.get(manifest_key(partition))
        if not manifest:
            return None
        meta = json.loads(manifest)
        gen = int(meta["generation"])
        data = b"".join(table.get(chunk_key(partition, gen, i)) or b"" for i in range(meta["chunks"]))
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise CheckpointError(f"checkpoint of partition {partition} (generation {gen}) does not match its "
                                  "manifest")
        self._generation[partition] = gen
        return data

    def due(self, partition: int) -> bool:
        return time.monotonic() - self._last.get(partition, 0.0) >= self.interval_s

    async def write(self, table, partition: int, data: bytes, still_owner: Callable[[], bool]) -> bool:
        """Write a snapshot; call from the stream iteration of that partition (Faust needs its event).

        Each record is sent on its own and delivered before the next, the manifest last: the embedded
        broker (Tansu 0.6) reports a partition's end offset as the first offset of its last batch plus
        one, so a manifest sent in one batch behind its pieces lay past the end that the next owner's
        recovery reads to. That owner restored the snapshot before it while the input was committed
        past it (visits lost from hot spot-days), and a worker given the partition back crashed on
        Faust's consistency check (its own writes past the broker's end). Each record's own delivery
        is awaited: Faust's producer flush gives up on its buffer after 0.1 s. Returns False, leaving
        the last complete snapshot as it was named, if the partition is revoked meanwhile.
        """

        async def put(key: bytes, value: bytes | None) -> bool:
            # What the table's __setitem__ / __delitem__ do, keeping the changelog record's future.
            target = table.partition_for_key(key)  # the current event's partition
            if value is None:
                del table.data[key]
                sent = table.send_changelog(target, key, None, value_serializer="raw")
            else:
                table.data[key] = value
                sent = table.send_changelog(target, key, value)
            await sent
            return still_owner()

        gen = 1 - self._generation.get(partition, 1)
        chunks = [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
        for i, piece in enumerate(chunks):
            if not await put(chunk_key(partition, gen, i), piece):
                return False
        i = len(chunks)
        while table.get(chunk_key(partition, gen, i)) is not None:  # pieces of an older, longer snapshot
            if not await put(chunk_key(partition, gen, i), None):
                return False
            i += 1
        manifest = json.dumps({"generation": gen, "chunks": len(chunks), "bytes": len(data),
                               "sha256": hashlib.sha256(data).hexdigest()}).encode()
        if not await put(manifest_key(partition), manifest):
            return False
        self._generation[partition] = gen
        self._last[partition] = time.monotonic()
        self.written += 1
        return True

    def forget(self, partition: int) -> None:
        self._last.pop(partition, None)


class CheckpointedStage:
    """A Faust-agent stage: per-partition states (each with ``snapshot()``), the input events
    processed since each partition's last checkpoint, and outputs sent but not yet acknowledged.

    A subclass keeps its states in the dict :meth:`_states` returns and counts
    checkpoints in ``self.stats.checkpoints``.
    """

    def __init__(self, interval_s: float) -> None:
        self.checkpoints = Checkpoints(interval_s)
        # Events of each partition processed since its last checkpoint; acked
        # when the next checkpoint includes them.
        self.pending: dict[int, list] = {}
        self._inflight: list = []  # send futures not yet known delivered

    def _states(self) -> dict:
        raise NotImplementedError

    def checkpoint_due(self, partition: int) -> bool:
        return self.checkpoints.due(partition)

    async def flush_outputs(self) -> None:
        """Wait until every output sent so far is acknowledged (raises if one failed)."""
        inflight, self._inflight = self._inflight, []
        if inflight:
            await asyncio.gather(*inflight)

    async def write_checkpoint(self, partition: int, table) -> bool:
        """Snapshot the partition into the table; call inside the stream iteration of that partition,
        after :meth:`flush_outputs`, so a checkpoint never includes outputs that were lost. False if
        the partition was revoked before the snapshot was complete."""
        state = self._states()[partition]
        written = await self.checkpoints.write(table, partition, state.snapshot(),
                                               lambda: self._states().get(partition) is state)
        if written:
            self.stats.checkpoints += 1
        return written

    async def settle(self, partition: int, event, table, ack) -> None:
        """Record a processed input event; when the partition's checkpoint is due, wait for every output,
        snapshot, and only then ``ack`` its events. Call while the partition is still this worker's."""
        state = self._states()[partition]
        self.pending.setdefault(partition, []).append(event)
        if not self.checkpoint_due(partition):
            return
        await self.flush_outputs()  # a checkpoint never includes an output that was lost
        if self._states().get(partition) is not state:
            return  # revoked while we awaited: the next owner re-reads from the last checkpoint
        if not await self.write_checkpoint(partition, table):
            return  # revoked while it was written: the next owner re-reads from the last complete one
        for done in self.pending.pop(partition, []):
            await ack(done)

    def forget(self, partitions) -> None:
        """Partitions revoked: their state lives on in the checkpoints; unacked events are re-read."""
        states = self._states()
        for p in partitions:
            states.pop(p, None)
            self.checkpoints.forget(p)
            self.pending.pop(p, None)
