"""``hotspot-dwell bench``: the engine against the Kafka client's own limit, in one run.

For one configuration (hot spots, officers, fixes, workers) on the embedded
broker (or ``--brokers``):

1. a patrol load (officers dwelling in hot spots and walking between them,
   :func:`geo.synthetic.patrol_tracks`) is produced to ``location-fixes``,
   one fix per message, followed by one record per partition a day later
   so that every visit closes;
2. a plain aiokafka ``getmany`` consumer reads the topic: the limit;
3. W workers process it; sustained fixes/s is from the first fix a worker
   processed (its ``first_fix`` metric) to the last visit it published (the
   broker timestamp of the last ``visit.closed``), with the workers' CPU
   seconds and peak memory (from /proc). The bench only watches the topic's
   end offsets while they work, so it takes no CPU from them;
4. the visits the workers published equal the replay of the same fixes;
5. latency: a fresh worker (reorder window 0, so a fix is used on arrival)
   that has read every officer's first fix takes the rest of the load at
   each offered rate, as a fix gateway writes it (a batch per partition
   every 50 ms); probe fixes of new officers inside hot spots are timed from
   their arrival to the ``visit.opened`` they cause, beside a pass-through
   forwarder (the floor), each run on a fresh embedded broker, three times
   alternating (:mod:`stream.bench_latency`).

Pure orchestration over real processes: nothing here is faked or modelled.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import geo
from geo.hotspots import HotspotSet, load_hotspots
from geo.synthetic import patrol_tracks, random_hotspots
from stream.broker import die_with_parent, free_port, stop_process
from stream.producer import clock_keys, fix_json

REPO = Path(__file__).resolve().parents[1]
T0_MS = 1_711_800_000_000  # 2024-03-30T12:00:00Z


@dataclass
class Load:
    hotspots_path: Path
    hotspots: HotspotSet
    records: list[tuple[bytes, bytes]]  # the patrol fixes, in time order
    closing: list[tuple[bytes, bytes]]  # one fix per partition a day later
    officers: int


def make_load(workdir: Path, n_hotspots: int, n_officers: int, n_fixes: int, partitions: int, seed: int = 3) -> Load:
    """Hot spots (the 57 Nottingham cells, or random 120-220 m ones) and a patrol load over them."""
    if n_hotspots == 57:
        path = Path(geo.NOTTINGHAM_HOTSPOTS_PATH)
        hs = load_hotspots(path)
    else:
        doc = random_hotspots(n_hotspots, seed, diameter_m=(120.0, 220.0), box_m=max(20_000.0, 600.0 * n_hotspots ** 0.5))
        path = workdir / f"hotspots-{n_hotspots}.geojson"
        path.write_text(json.dumps(doc))
        hs = HotspotSet.from_geojson_dict(doc, source=str(path))
    lon_c, lat_c = hs.centroids_wgs84
    cx, cy = hs.project(lon_c, lat_c)
    per = max(1, n_fixes // n_officers)
    officer, ts, x, y = patrol_tracks(np.column_stack([cx, cy]), n_officers, per, seed, t0_ms=T0_MS)
    lon, lat = hs.projection.to_wgs84(x, y)
    ids = [f"o{i}" for i in range(n_officers)]
    records = [(ids[o].encode(), fix_json(ids[o], t, la, lo)) for o, t, la, lo in
               zip(officer.tolist(), ts.tolist(), lat.tolist(), lon.tolist())]
    later = int(ts.max()) + 86_400_000
    closing = [(k, fix_json(k.decode(), later, float(lat_c[0]) + 0.5, float(lon_c[0]))) for k in clock_keys(partitions)]
    return Load(path, hs, records, closing, n_officers)


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, records, progress=None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        pending = []
        for i, (k, v) in enumerate(records):
            pending.append(await producer.send(topic, key=k, value=v))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                if progress:
                    progress.update(len(pending))
                pending = []
        await asyncio.gather(*pending)
        if progress:
            progress.update(len(pending))
    finally:
        await producer.stop()


async def raw_consume_rate(bootstrap: str, topic: str, n: int, partitions: int) -> float:
    """Records/s of a plain getmany consumer reading ``n`` records from the start of ``topic``.

    Partitions are assigned by hand (no group join to wait for), so the clock
    runs from the first fetch to the last record.
    """
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=5,
                                max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = 0
        t0 = time.perf_counter()
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            got += sum(len(v) for v in batch.values())
        return got / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


def proc_cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_bytes(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from /proc/<pid>/status (``VmRSS`` now, ``VmHWM`` its peak); 0 if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Worker:
    """A ``hotspot-dwell worker`` subprocess with its metrics port."""

    def __init__(self, bootstrap: str, prefix: str, hotspots: Path, workdir: Path, partitions: int, name: str,
                 *extra: str, app_id: str | None = None) -> None:
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--brokers", bootstrap, "--hotspots", str(hotspots),
             "--topic-prefix", prefix, "--app-id", app_id or prefix.rstrip("."), "--partitions", str(partitions),
             "--state-dir", str(workdir / f"{name}-state"), "--no-time-check", "--metrics-port", str(self.port),
             *extra],
            cwd=REPO, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def metric(self, name: str) -> float:
        try:
            # With 100,000 hot spots a scrape is over a million series: be patient.
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=120) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith(name + " "):
                        return float(line.split()[1])
        except OSError:
            pass
        return 0.0

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def peak_rss_bytes(self) -> int:
        return proc_memory_bytes(self.proc.pid, "VmHWM")

    def rss_bytes(self) -> int:
        return proc_memory_bytes(self.proc.pid, "VmRSS")

    def stop(self) -> None:
        stop_process(self.proc, 30.0)


def wait_ready(workers: list[Worker], timeout_s: float = 180.0) -> None:
    from stream.live_demo import wait_ready as one

    for w in workers:
        one(w.port, w.proc, timeout_s)


def throughput(bootstrap: str, load: Load, workers: int, partitions: int, workdir: Path, prefix: str,
               want_visits: int, repeats: int = 1, progress=None) -> tuple[dict, set[tuple]]:
    """Raw consume rate and the engine's sustained fixes/s on the same topic, ``repeats`` times (fresh
    workers of a new app each time, the raw rate measured just before each); the medians, every
    repeat, and the visits the first repeat published."""
    topic = prefix + "location-fixes"
    asyncio.run(create_topics(bootstrap, [topic], partitions))
    asyncio.run(produce_all(bootstrap, topic, load.records + load.closing, progress))
    n = len(load.records) + len(load.closing)
    runs, first_visits = [], None
    for r in range(repeats):
        raw = asyncio.run(raw_consume_rate(bootstrap, topic, n, partitions))
        app_id = f"{prefix.rstrip('.')}-r{r}"
        start = asyncio.run(_end_offsets(bootstrap, prefix + "dwell-intervals"))
        procs = [Worker(bootstrap, prefix, load.hotspots_path, workdir, partitions, f"{prefix}r{r}w{i}", app_id=app_id)
                 for i in range(workers)]
        try:
            wait_ready(procs)
            cpu0 = [w.cpu_s() for w in procs]
            visits, last_ms = asyncio.run(_wait_for_visits(bootstrap, prefix, want_visits, procs, workdir, start))
            cpu = sum(w.cpu_s() - c for w, c in zip(procs, cpu0))
            rss = [w.rss_bytes() for w in procs]
            peak = [w.peak_rss_bytes() for w in procs]
            first = min(t for t in (w.metric("hotspot_dwell_first_fix_timestamp_seconds") for w in procs) if t > 0)
            state = sum(w.metric("hotspot_dwell_state_bytes") for w in procs)
            tracked = sum(w.metric("hotspot_dwell_officers") for w in procs)
        finally:
            for w in procs:
                w.stop()
        seconds = last_ms / 1000.0 - first
        runs.append({"raw_consume_fixes_per_s": round(raw), "engine_fixes_per_s": round(n / seconds),
                     "engine_over_raw": round(n / seconds / raw, 4), "seconds": round(seconds, 2),
                     "worker_cpu_s": round(cpu, 2), "worker_rss_bytes": rss, "worker_peak_rss_bytes": peak,
                     "state_bytes": int(state), "officers_tracked": int(tracked),
                     "state_bytes_per_officer": round(state / tracked, 1) if tracked else None,
                     "visits_equal_first": first_visits is None or visits == first_visits})
        first_visits = visits if first_visits is None else first_visits
    med = {k: float(np.median([run[k] for run in runs])) for k in ("raw_consume_fixes_per_s", "engine_fixes_per_s",
                                                                    "engine_over_raw", "seconds", "worker_cpu_s")}
    return {"fixes": n, "officers": load.officers, "hotspots": len(load.hotspots), "workers": workers,
            "partitions": partitions, "repeats": repeats, "raw_consume_fixes_per_s": round(med["raw_consume_fixes_per_s"]),
            "engine_fixes_per_s": round(med["engine_fixes_per_s"]), "engine_over_raw": round(med["engine_over_raw"], 4),
            "seconds": med["seconds"], "worker_cpu_s": med["worker_cpu_s"],
            "worker_rss_bytes": max(runs, key=lambda x: max(x["worker_rss_bytes"]))["worker_rss_bytes"],
            "worker_peak_rss_bytes": max(runs, key=lambda x: max(x["worker_peak_rss_bytes"]))["worker_peak_rss_bytes"],
            "state_bytes_per_officer": runs[0]["state_bytes_per_officer"],
            "runs": runs}, first_visits


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> end offset of ``topic`` now ({} if it does not exist yet)."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return {}
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def _wait_for_visits(bootstrap: str, prefix: str, want: int, procs: list[Worker], workdir: Path,
                           start: dict[int, int], quiet_s: float = 2.0,
                           timeout_s: float = 1800.0) -> tuple[set[tuple], int]:
    """Wait until ``dwell-intervals`` holds ``want`` distinct closed visits; returns them and the broker
    timestamp (ms) of the last record. While the workers run only end offsets are polled (cheap); the
    topic is read once they have been still for ``quiet_s``."""
    from aiokafka import TopicPartition

    topic = prefix + "dwell-intervals"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        started = time.monotonic()
        while topic not in await consumer.topics():  # the workers create it
            if time.monotonic() - started > 60:
                raise RuntimeError(f"{topic} was not created within 60 s; logs in {workdir}")
            await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        for tp in tps:  # what this run publishes, not an earlier run's
            consumer.seek(tp, start.get(tp.partition, 0))
        seen: dict[str, tuple] = {}
        last_ms = 0
        ends, still_since = None, time.monotonic()
        while True:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"workers did not finish in {timeout_s:.0f} s ({len(seen)} of {want} visits); "
                                   f"logs in {workdir}")
            dead = [w for w in procs if w.proc.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker exited with {dead[0].proc.returncode}; log {dead[0].log}")
            await asyncio.sleep(0.5)
            now_ends = await consumer.end_offsets(tps)
            if now_ends != ends:
                ends, still_since = now_ends, time.monotonic()
                continue
            if time.monotonic() - still_since < quiet_s:
                continue
            for tp in tps:  # still: read what is new
                while await consumer.position(tp) < ends[tp]:
                    for m in (await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)).get(tp, []):
                        last_ms = max(last_ms, m.timestamp)
                        if dict(m.headers).get("ce_type", b"").endswith(b"visit.closed"):
                            b = json.loads(m.value)
                            seen[b["visit_id"]] = (b["officer_id"], b["hotspot_id"], b["start"], b["end"],
                                                   b["fixes"])
            if len(seen) >= want or time.monotonic() - still_since > 30:
                return set(seen.values()), last_ms  # all there, or never will be (the check says so)
    finally:
        await consumer.stop()


def replay_visits(load: Load, prefix: str, workdir: Path) -> set[tuple]:
    """The replay's visits of the same fixes, as the bench compares them."""
    from stream.replay import replay

    path = workdir / f"{prefix}fixes.jsonl"
    path.write_bytes(b"".join(v + b"\n" for _, v in load.records + load.closing))
    result = replay(path, load.hotspots, progress=False)
    return set(zip(result.visits["officer_id"].tolist(), result.visits["hotspot_id"].tolist(),
                   result.visits["start"].tolist(), result.visits["end"].tolist(), result.visits["fixes"].tolist()))


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="hotspot-dwell-bench-"))


def run(args) -> dict:
    """One configuration: throughput, the replay check, latency at each offered rate (the CLI's ``bench``)."""
    from tqdm import tqdm

    from stream.bench_latency import LATENCY_REPEATS, GATEWAY_BATCH_MS, latency
    from stream.broker import EmbeddedBroker

    workdir = Path(args.workdir) if args.workdir else default_workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    load = make_load(workdir, args.hotspots, args.officers, args.fixes, args.partitions)

    def body(bootstrap: str) -> dict:
        tag = f"b{int(time.time())}"
        want = replay_visits(load, f"{tag}t.", workdir)
        with tqdm(total=len(load.records) + len(load.closing), unit="fix", desc="producing", leave=False) as bar:
            measured, got = throughput(bootstrap, load, args.workers, args.partitions, workdir, f"{tag}t.",
                                       len(want), getattr(args, "repeat", 1), bar)
        result = {"throughput": measured,
                  "check": {"replay_visits": len(want), "stream_visits": len(got), "equal": got == want,
                            "missing": len(want - got), "extra": len(got - want)}}
        return result

    if args.brokers:
        result = body(args.brokers)
    else:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            result = body(broker.bootstrap)
    rates = [float(r) for r in args.rates.split(",") if r]
    result["latency"] = latency(args.brokers, load, rates, args.seconds, args.partitions, workdir,
                                f"l{int(time.time())}.", getattr(args, "gateway_batch_ms", None) or GATEWAY_BATCH_MS,
                                getattr(args, "latency_repeat", None) or LATENCY_REPEATS) if rates else []
    return result
