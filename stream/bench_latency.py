"""Latency of one worker at set offered rates, beside the broker's own floor.

For each offered rate, on topics of their own:

- **engine**: a fresh worker (reorder window 0, so a fix is used on arrival)
  takes the bench load at that rate; about 200 probe fixes a second, each
  from a new officer inside a hot spot, are timed from ``send()`` to the
  ``visit.opened`` they cause on ``dwell-intervals``;
- **floor**: the same load and probes through a pass-through forwarder
  (aiokafka consumer -> producer, the worker's fetch wait, no work), timed to
  the forwarded record. It is what the broker and the client cost on this
  machine; the engine's latency can only be above it.

Why topics of their own: the embedded broker (Tansu, memory storage) gets
slower to fetch from a topic as the topic fills (a pass-through at 5,000
records/s goes from 13 ms to 57 ms p50 within 20 s; written to another
topic, the same records leave it at 9-13 ms), which no Kafka broker does.
The load is produced with a 5 ms linger, Kafka's producer default since 4.0
(KIP-1030); the first second of each run (connections, first calls) is not
counted.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.producer import fix_json

LOAD_LINGER_MS = 5  # Kafka's producer default since 4.0
WARMUP_S = 1.0
PROBES_PER_S = 200


def _percentiles(lat_ms: np.ndarray) -> dict:
    if not lat_ms.size:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"p50_ms": round(float(np.percentile(lat_ms, 50)), 1), "p99_ms": round(float(np.percentile(lat_ms, 99)), 1),
            "max_ms": round(float(lat_ms.max()), 1)}


def opened_probe(m) -> str | None:
    """The probe officer of a ``visit.opened`` event, None for any other record."""
    if dict(m.headers).get("ce_type", b"").endswith(b"visit.opened"):
        return json.loads(m.value)["officer_id"]
    return None


def forwarded_probe(m) -> str | None:
    return m.key.decode() if m.key and m.key.startswith(b"probe-") else None


async def offer(bootstrap: str, source: str, sink: str, match: Callable, load, rate: float, seconds: float,
                t0_ms: int) -> dict:
    """Offer the load to ``source`` at ``rate`` fixes/s for ``seconds``; probes are timed to ``sink``."""
    probe_every = max(1, int(rate // PROBES_PER_S))
    lon_c, lat_c = load.hotspots.centroids_wgs84
    consumer = AIOKafkaConsumer(sink, bootstrap_servers=bootstrap, group_id=f"{sink}-lat", auto_offset_reset="latest",
                                fetch_max_wait_ms=5, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=LOAD_LINGER_MS)
    await producer.start()
    sent: dict[str, float] = {}
    lat: list[float] = []
    warm_until = time.perf_counter() + WARMUP_S

    async def read():
        while True:
            for msgs in (await consumer.getmany(timeout_ms=50)).values():
                now = time.perf_counter()
                for m in msgs:
                    probe = match(m)
                    t = sent.pop(probe, None) if probe is not None else None
                    if t is not None and t >= warm_until:
                        lat.append(now - t)

    reader = asyncio.create_task(read())
    n_total = int(rate * (seconds + WARMUP_S))
    records = load.records
    t0 = time.perf_counter()
    try:
        for i in range(n_total):
            if i % 50 == 0:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if i % probe_every == 0:
                oid = f"probe-{rate:.0f}-{i}"
                h = i % len(lon_c)
                sent[oid] = time.perf_counter()
                await producer.send(source, key=oid.encode(), value=fix_json(oid, t0_ms + i, lat_c[h], lon_c[h]))
            else:
                k, v = records[i % len(records)]
                await producer.send(source, key=k, value=v)
        offered = n_total / (time.perf_counter() - t0)
        deadline = time.perf_counter() + 30
        while sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    a = np.array(lat) * 1000
    return {"offered_fixes_per_s": rate, "achieved_offer_per_s": round(offered), "probes": int(a.size),
            "lost_probes": len(sent), **_percentiles(a)}


async def forward(bootstrap: str, source: str, sink: str, fetch_max_wait_ms: int) -> None:
    """The floor: every record of ``source`` to the same partition of ``sink``, as fast as the client goes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_max_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    await consumer.start()
    await producer.start()
    partitions = [TopicPartition(source, p) for p in sorted(consumer.partitions_for_topic(source) or [])]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    print("ready", flush=True)
    while True:
        for tp, msgs in (await consumer.getmany(timeout_ms=100)).items():
            for m in msgs:
                await producer.send(sink, key=m.key, value=m.value, partition=tp.partition)


def start_forwarder(bootstrap: str, source: str, sink: str, fetch_max_wait_ms: int, log: Path) -> subprocess.Popen:
    from stream.broker import die_with_parent

    proc = subprocess.Popen(
        [sys.executable, "-c", "import asyncio, sys; from stream.bench_latency import forward; "
         "asyncio.run(forward(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))",
         bootstrap, source, sink, str(fetch_max_wait_ms)],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=open(log, "wb"),
        preexec_fn=die_with_parent)
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"the pass-through forwarder did not start; see {log}")
    return proc
