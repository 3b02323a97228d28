"""Producing location fixes to Kafka: the simulator's output, a file, or a load test.

Records are keyed by officer id (so an officer's fixes stay in order on one
partition) and sent in per-partition batches; ``rate`` paces them in
fixes per second, or None for as fast as possible.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


def partition_of(key: bytes, n_partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a key."""
    parts = list(range(n_partitions))
    return _partitioner(key, parts, parts)


def fix_json(officer_id: str, ts_ms: int, lat: float, lon: float, accuracy_m: float | None = None) -> bytes:
    record = {"officer_id": officer_id, "ts": int(ts_ms), "lat": round(float(lat), 7), "lon": round(float(lon), 7)}
    if accuracy_m is not None and accuracy_m == accuracy_m:
        record["accuracy_m"] = float(accuracy_m)
    return json.dumps(record, separators=(",", ":")).encode()


def clock_keys(n_partitions: int, prefix: str = "clock") -> list[bytes]:
    """One key per partition, for records that move each partition's event time on."""
    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < n_partitions:
        key = f"{prefix}-{i}".encode()
        keys.setdefault(partition_of(key, n_partitions), key)
        i += 1
    return [keys[p] for p in range(n_partitions)]


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], *, rate: float | None = None,
                  producer_kwargs: dict | None = None) -> int:
    """Send ``(key, value)`` records in order; returns how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20,
                                **(producer_kwargs or {}))
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, key=key, value=value))
            sent += 1
            if rate and sent % 100 == 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def records_of(officer_ids: Sequence[str], ts_ms, lat, lon, accuracy_m=None) -> Iterable[tuple[bytes, bytes]]:
    acc = accuracy_m if accuracy_m is not None else [None] * len(officer_ids)
    for o, t, la, lo, a in zip(officer_ids, ts_ms, lat, lon, acc):
        yield str(o).encode(), fix_json(str(o), int(t), la, lo, a)
