"""Latency of one worker at set offered rates, beside the broker's own floor.

For each offered rate, on a broker of its own and topics of their own:

- **engine**: a fresh worker (reorder window 0, so a fix is used on arrival)
  reads every officer's first fix, then takes the rest of the bench load at
  that rate, as mid-shift; about 200 probe fixes a second, each
  from a new officer inside a hot spot, are timed from their arrival to the
  ``visit.opened`` they cause on ``dwell-intervals``;
- **floor**: the same load and probes through a pass-through forwarder
  (aiokafka consumer with the worker's fetch wait, records handed to the
  producer as the worker hands its events, no work), timed to
  the forwarded record. It is what the broker and the client cost on this
  machine; the engine's latency can only be above it.

Both are run ``repeats`` times, alternating, and the medians reported: on a
shared machine one 10 s run's p99 moves by 20 ms from one run to the next.

The load comes as from a fix gateway (the radio system's AVL feed): every
``gateway_batch_ms`` it writes the fixes that came in since its last write,
one record batch per partition. A fix *arrives* when its batch is handed to
the Kafka client; the time it spent in the gateway before that (up to one
interval) is the gateway's, not the engine's, and is not counted.

Why a fresh broker each time, and why 50 ms batches: the embedded broker
(Tansu 0.6, memory storage) keeps a cache entry for every object it stored or
served in the last ten minutes (each record batch is an object) and scans all
of them on every get and put (``Cache::evict`` in tansu-storage's
dynostore.rs); its fetch also lists every batch stored in the partition. So
each request costs more with every batch of the last ten minutes, on any
topic: with a batch per partition every 20 ms the floor's p99 climbs from
about 30 ms to 70-110 ms within 10 s at 5,000 fixes/s; every 50 or 100 ms it
stays flat (p99 20-40 ms). The first second of each run (connections, first
calls) is not counted; ``by_second`` gives the percentiles of each following
second.
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
from aiokafka.partitioner import DefaultPartitioner

from stream.batched_sender import BatchedSender
from stream.producer import fix_json

GATEWAY_BATCH_MS = 50  # how often the simulated fix gateway writes its batches (see above)
_PARTITIONER = DefaultPartitioner()
LATENCY_REPEATS = 3
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
                t0_ms: int, gateway_batch_ms: int = GATEWAY_BATCH_MS, skip: int = 0) -> dict:
    """Offer the load to ``source`` at ``rate`` fixes/s for ``seconds`` as a fix gateway would: every
    ``gateway_batch_ms`` the fixes due since the last tick go out, one record batch per partition (keyed by
    officer, Kafka's default partitioner). A probe's clock starts when its batch is handed to the client (the
    fix's arrival) and stops when ``match`` finds it on ``sink``. The load's first ``skip`` records are left
    out (they were fed before, see :func:`latency`)."""
    probe_every = max(1, int(rate // PROBES_PER_S))
    lon_c, lat_c = load.hotspots.centroids_wgs84
    # Every partition of the sink assigned and positioned at its end before the first fix goes out (no
    # group: a rebalance under load would skip what came in meanwhile).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    await consumer.topics()  # fresh metadata, so the sink's partitions are known
    sink_partitions = [TopicPartition(sink, p) for p in sorted(consumer.partitions_for_topic(sink) or [])]
    if not sink_partitions:
        raise RuntimeError(f"{sink} has no partitions")
    consumer.assign(sink_partitions)
    await consumer.seek_to_end(*sink_partitions)
    for tp in sink_partitions:
        await consumer.position(tp)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=1 << 20, acks="all")
    await producer.start()
    deliveries: list[asyncio.Future] = []
    gateway = BatchedSender(producer, deliveries.append)
    partitions = sorted(await producer.partitions_for(source))
    partition_of: dict[bytes, int] = {}
    sent: dict[str, float] = {}
    lat: list[tuple[float, float]] = []  # (arrival, latency) of each probe
    t0 = time.perf_counter()
    warm_until = t0 + WARMUP_S

    async def read():
        while True:
            for msgs in (await consumer.getmany(timeout_ms=50)).values():
                now = time.perf_counter()
                for m in msgs:
                    probe = match(m)
                    t = sent.pop(probe, None) if probe is not None else None
                    if t is not None and t >= warm_until:
                        lat.append((t, now - t))

    reader = asyncio.create_task(read())
    n_total = int(rate * (seconds + WARMUP_S))
    records = load.records[skip:]
    tick_s = gateway_batch_ms / 1000.0
    try:
        done = ticks = 0
        while done < n_total:
            due = min(n_total, int((time.perf_counter() - t0) * rate) + 1)
            probes = []
            for i in range(done, due):
                if i % probe_every == 0:
                    oid = f"probe-{rate:.0f}-{i}"
                    h = i % len(lon_c)
                    key, value = oid.encode(), fix_json(oid, t0_ms + i, lat_c[h], lon_c[h])
                    probes.append(oid)
                else:
                    key, value = records[i % len(records)]
                p = partition_of.get(key)
                if p is None:
                    p = partition_of[key] = _PARTITIONER(key, partitions, partitions)
                gateway.add(source, p, key, value, [])
            arrival = time.perf_counter()
            for oid in probes:
                sent[oid] = arrival
            gateway.flush()
            done = due
            ticks += 1
            await asyncio.sleep(max(0.0, t0 + ticks * tick_s - time.perf_counter()))
        offered = n_total / (time.perf_counter() - t0)
        await gateway.handed_over()
        await asyncio.gather(*deliveries)
        deadline = time.perf_counter() + 30
        while sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    when, a = (np.array(lat).reshape(-1, 2) * [1, 1000]).T
    # The last batch can leave a moment after the last second: it counts in that second.
    second = np.minimum(np.floor(when - warm_until), max(0, int(np.ceil(seconds)) - 1)).astype(np.int64)
    by_second = [[int(s), *_percentiles(a[second == s]).values()] for s in np.unique(second)]
    return {"offered_fixes_per_s": rate, "achieved_offer_per_s": round(offered), "probes": int(a.size),
            "lost_probes": len(sent), **_percentiles(a), "by_second": by_second}


async def forward(bootstrap: str, source: str, sink: str, fetch_max_wait_ms: int) -> None:
    """The floor: every record of ``source`` to the same partition of ``sink``, as fast as the client goes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_max_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=1 << 20, acks="all")
    await consumer.start()
    await producer.start()
    # The worker's way of handing records to the producer (a batch per partition per fetch, never waiting).
    outputs = BatchedSender(producer, lambda delivery: None)
    partitions = [TopicPartition(source, p) for p in sorted(consumer.partitions_for_topic(source) or [])]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    print("ready", flush=True)
    while True:
        for tp, msgs in (await consumer.getmany(timeout_ms=100)).items():
            for m in msgs:
                outputs.add(sink, tp.partition, m.key, m.value, [])
        outputs.flush()


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


def wait_read(worker, n: int, timeout_s: float = 300.0) -> None:
    """Until ``worker`` has read ``n`` records of location-fixes (its metrics say so)."""
    deadline = time.monotonic() + timeout_s
    while worker.metric("hotspot_dwell_ingest_records_total") < n:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.proc.returncode}; see {worker.log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker read fewer than {n} records in {timeout_s:.0f} s; see {worker.log}")
        time.sleep(0.2)  # a scrape is the only way to ask a worker in another process


def latency(brokers: str | None, load, rates: list[float], seconds: float, partitions: int, workdir: Path,
            prefix: str, gateway_batch_ms: int = GATEWAY_BATCH_MS, repeats: int = LATENCY_REPEATS) -> list[dict]:
    """Fix-to-``visit.opened`` latency of a fresh worker (reorder window 0) at each offered rate, beside the
    pass-through floor, ``repeats`` times each, engine and floor alternating; medians over the repeats.

    Without ``brokers`` every measurement gets a broker of its own, started fresh (see the module's docstring)."""
    from tqdm import tqdm

    from stream.bench import T0_MS, Worker, create_topics, produce_all, wait_ready
    from stream.broker import EmbeddedBroker, stop_process
    from stream.settings import WorkerSettings

    # The timed load is a shift under way: every officer's first fix goes in before the clock starts (the
    # load is in time order), so the timed fixes mostly extend visits, as they would mid-shift. From a cold
    # start every timed fix would be an officer's first and open a visit: an event a fix, the worst case.
    warm = load.records[:load.officers]

    def engine_run(bootstrap: str, topics: str, rate: float) -> dict:
        asyncio.run(create_topics(bootstrap, [topics + "location-fixes"], partitions))
        asyncio.run(produce_all(bootstrap, topics + "location-fixes", warm))
        w = Worker(bootstrap, topics, load.hotspots_path, workdir, partitions, f"{topics}w", "--reorder-window-s", "0")
        try:
            wait_ready([w])
            wait_read(w, len(warm))
            return asyncio.run(offer(bootstrap, topics + "location-fixes", topics + "dwell-intervals", opened_probe,
                                     load, rate, seconds, T0_MS, gateway_batch_ms, skip=len(warm)))
        finally:
            w.stop()

    def floor_run(bootstrap: str, topics: str, rate: float) -> dict:
        # The same records in the broker as for the engine (its cost grows with them; see the docstring).
        asyncio.run(create_topics(bootstrap, [topics + "location-fixes", topics + "forwarded"], partitions))
        asyncio.run(produce_all(bootstrap, topics + "location-fixes", warm))
        fw = start_forwarder(bootstrap, topics + "location-fixes", topics + "forwarded",
                             WorkerSettings().fetch_max_wait_ms, workdir / f"{topics}forwarder.log")
        try:
            return asyncio.run(offer(bootstrap, topics + "location-fixes", topics + "forwarded", forwarded_probe,
                                     load, rate, seconds, T0_MS, gateway_batch_ms, skip=len(warm)))
        finally:
            stop_process(fw, 10.0)

    def on_a_broker(run, topics: str, rate: float) -> dict:
        if brokers:
            return run(brokers, topics, rate)
        with EmbeddedBroker(log_path=workdir / f"{topics}broker.log") as broker:
            return run(broker.bootstrap, topics, rate)

    def medians(runs: list[dict]) -> dict:
        return {k: (round(float(np.median([r[k] for r in runs])), 1) if all(r[k] is not None for r in runs) else None)
                for k in ("p50_ms", "p99_ms", "max_ms")}

    out = []
    progress = tqdm(total=2 * repeats * len(rates), desc="latency runs (engine, floor)", unit="run", leave=False)
    for rate in rates:
        runs = []
        for i in range(repeats):
            measured = on_a_broker(engine_run, f"{prefix}{rate:.0f}r{i}e.", rate)
            progress.update()
            runs.append({"engine": measured, "floor": on_a_broker(floor_run, f"{prefix}{rate:.0f}r{i}f.", rate)})
            progress.update()
        engine = [r["engine"] for r in runs]
        floor = [r["floor"] for r in runs]
        out.append({"offered_fixes_per_s": rate, "gateway_batch_ms": gateway_batch_ms, "warm_fixes": len(warm),
                    "repeats": repeats,
                    "achieved_offer_per_s": round(float(np.median([r["achieved_offer_per_s"] for r in engine]))),
                    "probes": sum(r["probes"] for r in engine), "lost_probes": sum(r["lost_probes"] for r in engine),
                    **medians(engine),
                    "floor": {**medians(floor), "probes": sum(r["probes"] for r in floor),
                              "lost_probes": sum(r["lost_probes"] for r in floor)},
                    "runs": runs})
    progress.close()
    return out
