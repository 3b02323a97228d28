"""One worker on the embedded broker: sustained fixes/s against the raw consumer, and latency.

    python benchmarks/bench_stream.py [--fixes 300000] [--officers 20000] [--rate 1000]

1. Throughput: N single-fix messages are produced to location-fixes first;
   then, in the same run, a plain aiokafka ``getmany`` consumer reads the
   topic (the client's limit) and a worker processes it (from ready to the
   last fix counted by its metrics). Reported as fixes/s and their ratio.
2. Latency: with the worker idle and caught up, fixes that each open a visit
   are offered at ``--rate`` per second; latency is from producing a fix to
   receiving the ``visit.opened`` it causes (reorder window 0, so the fix is
   used on arrival rather than held for the window).
Results go to benchmarks/results/stream.json. Issue 5 extends this.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

import geo  # noqa: E402
from benchmarks.bench_replay import machine  # noqa: E402
from geo.hotspots import load_hotspots  # noqa: E402
from stream.broker import EmbeddedBroker, die_with_parent, free_port  # noqa: E402
from stream.producer import fix_json  # noqa: E402

PARTITIONS = 4
T0_MS = 1_711_800_000_000  # 2024-03-30T12:00:00Z


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        m = re.search(rf"^{name} ([0-9.e+]+)$", r.read().decode(), re.M)
    return float(m.group(1)) if m else 0.0


async def produce_all(bootstrap, topic, records):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_consume(bootstrap, topic, n) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{time.time()}",
                                auto_offset_reset="earliest", fetch_max_wait_ms=5, max_partition_fetch_bytes=8 << 20,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    got = 0
    t0 = None
    try:
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            if batch and t0 is None:
                t0 = time.perf_counter()
            got += sum(len(v) for v in batch.values())
        return got / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


def start_worker(bootstrap, prefix, port, state_dir, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", "--brokers", bootstrap, "--hotspots",
         str(geo.NOTTINGHAM_HOTSPOTS_PATH), "--topic-prefix", prefix, "--app-id", prefix.rstrip("."),
         "--partitions", str(PARTITIONS), "--state-dir", str(state_dir), "--no-time-check",
         "--metrics-port", str(port), *extra],
        cwd=HERE.parent, stdout=open(state_dir.with_suffix(".log"), "wb"), stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def throughput(broker, n_fixes, n_officers, work) -> dict:
    hs = load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)
    rng = np.random.default_rng(5)
    lon0, lat0 = hs.centroids_wgs84
    per = n_fixes // n_officers
    start = rng.integers(0, len(lon0), n_officers)
    records = []
    for k in range(per):  # officers walk around the hot spot centres, one fix each per 30 s
        lat = lat0[start] + rng.normal(0, 0.002, n_officers)
        lon = lon0[start] + rng.normal(0, 0.003, n_officers)
        for o in range(n_officers):
            oid = f"o{o}"
            records.append((oid.encode(), fix_json(oid, T0_MS + k * 30_000 + o % 1000, lat[o], lon[o])))
    asyncio.run(produce_all(broker.bootstrap, "tp.location-fixes", records))
    raw = asyncio.run(raw_consume(broker.bootstrap, "tp.location-fixes", len(records)))
    port = free_port()
    worker = start_worker(broker.bootstrap, "tp.", port, work / "tp-state")
    try:
        from stream.live_demo import wait_ready

        wait_ready(port, worker)
        t0 = time.perf_counter()
        while metric(port, "hotspot_dwell_batch_fixes_sum") < len(records):
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("worker did not finish in 600 s")
            time.sleep(0.25)  # each scrape costs the worker some GIL time: poll gently
        engine = len(records) / (time.perf_counter() - t0)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return {"fixes": len(records), "officers": n_officers, "raw_consume_fixes_per_s": round(raw),
            "engine_fixes_per_s": round(engine), "engine_over_raw": round(engine / raw, 4)}


async def _latency(bootstrap, prefix, rate, n) -> list[float]:
    hs = load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)
    lon0, lat0 = hs.centroids_wgs84
    consumer = AIOKafkaConsumer(prefix + "dwell-intervals", bootstrap_servers=bootstrap, group_id=prefix + "lat",
                                auto_offset_reset="latest", fetch_max_wait_ms=5, session_timeout_ms=6000,
                                heartbeat_interval_ms=1000)
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    got: list[float] = []

    async def read():
        while len(got) < n:
            for msgs in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for m in msgs:
                    if dict(m.headers).get("ce_type", b"").endswith(b"visit.opened"):
                        officer = json.loads(m.value)["officer_id"]
                        if officer in sent:
                            got.append(now - sent.pop(officer))

    reader = asyncio.create_task(read())
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        oid = f"lat{i}"
        h = i % len(lon0)
        sent[oid] = time.perf_counter()
        await producer.send(prefix + "location-fixes", key=oid.encode(),
                            value=fix_json(oid, T0_MS + i, lat0[h], lon0[h]))
    await asyncio.wait_for(reader, timeout=60)
    await producer.stop()
    await consumer.stop()
    return got


def latency(broker, rate, n, work) -> dict:
    port = free_port()
    worker = start_worker(broker.bootstrap, "tl.", port, work / "tl-state", "--reorder-window-s", "0")
    try:
        from stream.live_demo import wait_ready

        wait_ready(port, worker)
        lat = np.array(asyncio.run(_latency(broker.bootstrap, "tl.", rate, n))) * 1000
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return {"offered_fixes_per_s": rate, "samples": int(lat.size), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "max_ms": round(float(lat.max()), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fixes", type=int, default=300_000)
    ap.add_argument("--officers", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--latency-samples", type=int, default=3000)
    args = ap.parse_args()
    work = HERE / "work" / "stream"
    work.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        admin_topics(broker.bootstrap)
        result = {"benchmark": "stream", "throughput": throughput(broker, args.fixes, args.officers, work),
                  "latency": latency(broker, args.rate, args.latency_samples, work), "machine": machine()}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "stream.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def admin_topics(bootstrap) -> None:
    async def create():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(f"{p}location-fixes", PARTITIONS, 1) for p in ("tp.", "tl.")])
        finally:
            await admin.close()
    asyncio.run(create())


if __name__ == "__main__":
    main()
