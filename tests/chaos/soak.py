"""The soak: one worker under a steady load for half an hour, across several simulated policing days.

Acceptance (the issue): 30 minutes at 3,000 fixes/s (twice a large force's peak), memory, lag and
latency recorded every 10 s and drawn; the worker's RSS over the last 10 minutes within 10% of its
RSS at the 10-minute mark (old days' state goes once the day is closed and its events are out), and
the lag bounded. Runs shorter than 20 minutes compare the last half with the mark at a third.

The embedded broker and one ``hotspot-dwell worker`` (``--no-time-check``: simulated event time) run
on loopback over the 57 Nottingham hot spots with a randomised schedule. Consecutive days of the same
officers are simulated (:func:`stream.simulate.simulate_day`) before the clock starts and offered in
delivery order at a constant wall-clock rate: event time is compressed (a day's fixes take ``day_s``,
the officer count is chosen for it, and the night between two shifts passes at once), so days close
during the run. The fixes go out as a fix gateway writes them, every ``tick_ms`` one record batch per
partition, keyed by officer (the embedded broker's cost grows with the batches it holds; see
:mod:`stream.bench_latency`). Every ``sample_s``: the worker's and the broker's RSS and CPU, stage 1's
state bytes and officers, the lag (fixes offered minus read by the worker, read after the scrape, so an
upper bound that includes up to one gateway tick), the offered rate, the window's p50/p99 of the
worker's fix latency and event-loop lag (histogram bucket deltas), the day on the worker's board; and
``hotspot.day_closed`` events are counted on ``patrol-events``.

    python -m tests.chaos.soak --minutes 30 --rate 3000 --out benchmarks/results/soak

writes ``<out>.json`` and ``<out>.png``; exit status 0 only if memory is flat, the lag bounded, every
fix read after the offer and every day whose next day's input began closed.

On the embedded broker, ``--worker-fetch-max-wait-ms 100`` is needed for the lag to hold for 30 minutes:
with stage 1's default 5 ms wait the worker sends a few hundred fetches a second, Tansu's cost per
request grows with the objects it touched in the last ten minutes, and at 3,000 fixes/s its CPU climbs
from 0.16 to over a core in 10 minutes until it stops serving ``location-fixes`` (two runs,
``benchmarks/results/soak-run*-embedded-broker-stall.*``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import math
import signal
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.bench import proc_cpu_s, proc_memory_bytes
from tests.chaos.soak_chart import MIB, draw
from tests.chaos.soak_load import FIRST_DAY, FIXES_PER_OFFICER_DAY, Load, make_load


@dataclass(frozen=True)
class SoakSettings:
    minutes: float = 30.0
    rate: float = 3_000.0  # offered fixes/s
    day_s: float = 300.0  # wall-clock seconds one simulated policing day takes at ``rate``
    sample_s: float = 10.0
    tick_ms: int = 200  # how often the gateway writes its batches
    partitions: int = 4
    seed: int = 11
    lag_bound_s: float = 5.0  # lag must stay under this many seconds of input
    memory_tolerance: float = 0.10
    drain_timeout_s: float = 120.0  # after the last fix: to read it all and close the complete days
    worker_fetch_max_wait_ms: int = 0  # stage 1's fetch wait; 0: the worker's default (see the docstring)

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def officers(self) -> int:
        return max(2 * self.partitions, round(self.rate * self.day_s / FIXES_PER_OFFICER_DAY))

    @property
    def lag_bound_fixes(self) -> int:
        return int(self.lag_bound_s * self.rate)

    def marks(self) -> tuple[float, float]:
        """(when the reference RSS is taken, where the last window starts), in seconds of the run."""
        if self.seconds >= 1200:
            return 600.0, self.seconds - 600.0
        return self.seconds / 3, self.seconds / 2


# -- the load ------------------------------------------------------------------------------


# -- what the worker says ------------------------------------------------------------------

def scrape(port: int) -> tuple[dict[str, float], dict[str, dict[float, float]]]:
    """The worker's unlabelled series by name, and its unlabelled histograms as {name: {le: count}}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    scalars: dict[str, float] = {}
    histograms: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                scalars[sample.name] = sample.value
            elif sample.name.endswith("_bucket") and set(sample.labels) == {"le"}:
                histograms.setdefault(family.name, {})[float(sample.labels["le"])] = sample.value
    return scalars, histograms


def window_quantile(q: float, now: dict[float, float], before: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over the increase between two scrapes of cumulative buckets."""
    bounds = sorted(now)
    counts = [now[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if math.isinf(b):
                return lower  # above the highest finite bound: that bound, as Prometheus answers
            return lower + (b - lower) * (rank - below) / (c - below) if c > below else b
        lower, below = b, c
    return lower


# -- the run -------------------------------------------------------------------------------


class Soak:
    """Offers the load through a gateway, samples the worker every ``sample_s``, watches the day closes."""

    def __init__(self, settings: SoakSettings, load: Load, bootstrap: str, prefix: str, worker, broker_pid: int,
                 n_hotspots: int, progress: Callable[[str], None]) -> None:
        self.settings, self.load, self.bootstrap, self.prefix = settings, load, bootstrap, prefix
        self.worker, self.broker_pid, self.n_hotspots, self.progress = worker, broker_pid, n_hotspots, progress
        self.offered = 0
        self.samples: list[dict] = []
        self.closes: dict[str, dict] = {}  # policing day -> day_closed rows seen and when
        self._t0 = time.perf_counter()
        self._previous: tuple | None = None  # (t, offered, ingested, worker cpu, broker cpu, histograms)
        self._tasks: list[asyncio.Task] = []  # the sampler and the day-close watcher: their failures end the run

    def clock(self) -> float:
        return time.perf_counter() - self._t0

    async def run(self) -> dict:
        from aiokafka import AIOKafkaProducer

        from stream.batched_sender import BatchedSender

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0, max_batch_size=1 << 20)
        await producer.start()
        self._tasks.append(asyncio.create_task(self._watch_day_closes()))
        try:
            deliveries: list[asyncio.Future] = []
            gateway = BatchedSender(producer, deliveries.append)
            self._t0 = time.perf_counter()
            await self._sample("offer")
            self._tasks.append(sampler := asyncio.create_task(self._sample_every("offer")))
            await self._offer(gateway, deliveries, await producer.partitions_for(self.prefix + "location-fixes"))
            offered_s = self.clock()
            self._check_tasks()
            sampler.cancel()
            if offered_s - self.samples[-1]["t_s"] >= self.settings.sample_s / 2:
                await self._sample("offer")  # the end of the offer, unless a sample was just taken
            await gateway.handed_over()
            await asyncio.gather(*deliveries)
            drained_s = await self._drain()
            await self._sample("end")
            return {"offered_s": offered_s, "drained_s": drained_s}
        finally:
            for task in self._tasks:
                task.cancel()
            await producer.stop()

    def _check_tasks(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled():
                task.result()  # raises what stopped it

    async def _offer(self, gateway, deliveries: list, partitions: set[int]) -> None:
        from stream.producer import fix_json, partition_of

        topic, load, rate = self.prefix + "location-fixes", self.load, self.settings.rate
        keys = [o.encode() for o in load.officer_ids]
        partition = [partition_of(k, len(partitions)) for k in keys]
        tick_s = self.settings.tick_ms / 1000.0
        ticks = 0
        while self.offered < len(load):
            first, due = self.offered, min(len(load), int(self.clock() * rate))
            for o, ts, lat, lon, acc in zip(load.officer[first:due].tolist(), load.ts_ms[first:due].tolist(),
                                            load.lat[first:due].tolist(), load.lon[first:due].tolist(),
                                            load.accuracy_m[first:due].tolist()):
                gateway.add(topic, partition[o], keys[o], fix_json(load.officer_ids[o], ts, lat, lon, acc), [])
            gateway.flush()
            self.offered = max(first, due)
            if len(deliveries) > 1000:  # keep the list short; a failed delivery ends the run
                for f in [f for f in deliveries if f.done()]:
                    f.result()
                deliveries[:] = [f for f in deliveries if not f.done()]
            self._check_tasks()
            ticks += 1
            await asyncio.sleep(max(0.0, ticks * tick_s - self.clock()))  # the pacing timer

    async def _sample_every(self, phase: str) -> None:
        k = len(self.samples)
        while True:
            await asyncio.sleep(max(0.0, k * self.settings.sample_s - self.clock()))
            await self._sample(phase)
            k += 1

    async def _drain(self) -> float | None:
        """Seconds after the last fix until the worker has read every fix and every complete day is closed."""
        started = self.clock()
        while self.clock() - started < self.settings.drain_timeout_s:
            scalars, _ = await self._scrape()
            if scalars.get("hotspot_dwell_ingest_records_total", 0) >= self.offered and self._all_closed():
                return self.clock() - started
            await asyncio.sleep(0.5)  # a scrape is the only way to ask the worker
        return None

    def expected_closed(self) -> list[str]:
        """The days whose next day's input has begun (their close is due)."""
        return [d.isoformat() for d in self.load.days[:max(0, self.load.day_index_at(self.offered))]]

    def _all_closed(self) -> bool:
        return all(self.closes.get(d, {}).get("rows", 0) >= self.n_hotspots for d in self.expected_closed())

    async def _scrape(self) -> tuple[dict, dict]:
        if self.worker.proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {self.worker.proc.returncode}; see {self.worker.log}")
        return await asyncio.to_thread(scrape, self.worker.port)  # off the loop: the pacing goes on

    async def _sample(self, phase: str) -> None:
        scalars, histograms = await self._scrape()
        # Read after the scrape: the lag is then an upper bound.
        t, offered = self.clock(), self.offered
        ingested = int(scalars.get("hotspot_dwell_ingest_records_total", 0))
        cpu = (proc_cpu_s(self.worker.proc.pid), proc_cpu_s(self.broker_pid))
        windowed = self._previous is not None and phase == "offer"  # a rate over a 10 s window of the offer
        prev = self._previous or (0.0, 0, 0, cpu[0], cpu[1], {})
        span = max(t - prev[0], 1e-9)
        latency = histograms.get("hotspot_dwell_fix_latency_seconds", {})
        loop_lag = histograms.get("hotspot_dwell_event_loop_lag_seconds", {})
        board_day = scalars.get("hotspot_dwell_policing_day_start_timestamp_seconds")
        day_k = self.load.day_index_at(offered)
        s = {"phase": phase, "t_s": round(t, 2), "offered": offered, "ingested": ingested,
             "lag_fixes": offered - ingested, "lag_s": round((offered - ingested) / self.settings.rate, 3),
             "offered_per_s": round((offered - prev[1]) / span, 1) if windowed else None,
             "ingested_per_s": round((ingested - prev[2]) / span, 1) if windowed else None,
             "worker_rss_bytes": proc_memory_bytes(self.worker.proc.pid),
             "broker_rss_bytes": proc_memory_bytes(self.broker_pid),
             "worker_cpu_share": round((cpu[0] - prev[3]) / span, 3) if self._previous else None,
             "broker_cpu_share": round((cpu[1] - prev[4]) / span, 3) if self._previous else None,
             "state_bytes": int(scalars.get("hotspot_dwell_state_bytes", 0)),
             "officers": int(scalars.get("hotspot_dwell_officers", 0)),
             # None for the first sample: its buckets hold the worker's start, not a window.
             "latency_p50_s": window_quantile(0.5, latency, prev[5]["latency"]) if self._previous else None,
             "latency_p99_s": window_quantile(0.99, latency, prev[5]["latency"]) if self._previous else None,
             "loop_lag_p99_s": window_quantile(0.99, loop_lag, prev[5]["loop_lag"]) if self._previous else None,
             "input_day": self.load.days[day_k].isoformat() if day_k >= 0 else None,
             "board_day": (dt.datetime.fromtimestamp(board_day, dt.UTC).date().isoformat()
                           if board_day else None),
             "days_closed": sum(c["rows"] >= self.n_hotspots for c in self.closes.values()),
             "load_avg_1m": float(Path("/proc/loadavg").read_text().split()[0])}  # the machine is shared
        self._previous = (t, offered, ingested, cpu[0], cpu[1], {"latency": latency, "loop_lag": loop_lag})
        self.samples.append(s)
        self.progress(progress_line(s))

    async def _watch_day_closes(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = self.prefix + "patrol-events"
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=500)
        await consumer.start()
        try:
            await consumer.topics()  # fresh metadata: the worker created the topic
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                    for m in msgs:
                        if dict(m.headers).get("ce_type", b"").endswith(b"hotspot.day_closed"):
                            c = self.closes.setdefault(json.loads(m.value)["policing_day"],
                                                       {"rows": 0, "first_s": round(self.clock(), 2)})
                            c["rows"] += 1
                            c["last_s"] = round(self.clock(), 2)
        finally:
            await consumer.stop()


def progress_line(s: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v * 1000:.0f}"

    rate = "-" if s["offered_per_s"] is None else f"{s['offered_per_s']:,.0f}"
    return (f"[{s['phase']:>5} {s['t_s']:7.1f} s] offered {s['offered']:,} ({rate}/s) lag {s['lag_fixes']:,} "
            f"({s['lag_s']:.2f} s) worker {s['worker_rss_bytes'] / MIB:,.0f} MiB broker "
            f"{s['broker_rss_bytes'] / MIB:,.0f} MiB state {s['state_bytes'] / MIB:.2f} MiB "
            f"latency p50/p99 {ms(s['latency_p50_s'])}/{ms(s['latency_p99_s'])} ms loop p99 "
            f"{ms(s['loop_lag_p99_s'])} ms input {s['input_day']} board {s['board_day']} closed {s['days_closed']}")


def summarise(settings: SoakSettings, samples: list[dict], days: list[dict], timing: dict) -> dict:
    """The figures and the verdict (see the module's docstring)."""
    run = [s for s in samples if s["phase"] == "offer"]
    mark_s, window_from = settings.marks()
    at_mark = min(run, key=lambda s: abs(s["t_s"] - mark_s))
    last = [s for s in run if s["t_s"] >= window_from]
    rss = [s["worker_rss_bytes"] for s in last]
    ratio = max(rss) / at_mark["worker_rss_bytes"]
    lag_end = run[-1]["lag_fixes"]
    lag_max_last = max(s["lag_fixes"] for s in last)
    p99 = np.array([s["latency_p99_s"] for s in run if s["latency_p99_s"] is not None])
    p50 = np.array([s["latency_p50_s"] for s in run if s["latency_p50_s"] is not None])
    rates = [s["offered_per_s"] for s in run[1:] if s["offered_per_s"] is not None]
    due = [d for d in days if d["close_due"]]
    closed = [d for d in due if d["rows"] >= d["hotspots"]]
    memory_flat = ratio <= 1.0 + settings.memory_tolerance
    lag_bounded = max(lag_end, lag_max_last) <= settings.lag_bound_fixes
    return {
        "mark_s": mark_s, "last_window_from_s": window_from,
        "rss_at_mark_bytes": at_mark["worker_rss_bytes"], "rss_max_last_window_bytes": max(rss),
        "rss_min_last_window_bytes": min(rss), "rss_ratio": round(ratio, 4), "memory_flat": memory_flat,
        "rss_peak_bytes": max(s["worker_rss_bytes"] for s in samples),
        "broker_rss_end_bytes": samples[-1]["broker_rss_bytes"],
        "lag_bound_fixes": settings.lag_bound_fixes, "lag_end_fixes": lag_end,
        "lag_max_last_window_fixes": lag_max_last, "lag_max_fixes": max(s["lag_fixes"] for s in run),
        "lag_bounded": lag_bounded,
        "latency_p50_s_median": float(np.median(p50)) if p50.size else None,
        "latency_p99_s": ({f"p{q}": float(np.percentile(p99, q)) for q in (50, 90, 100)} if p99.size else None),
        "loop_lag_p99_s_max": max((s["loop_lag_p99_s"] or 0.0) for s in run),
        "offered": samples[-1]["offered"], "achieved_rate": round(samples[-1]["offered"] / timing["offered_s"], 1),
        "rate_10s_min": min(rates) if rates else None, "rate_10s_max": max(rates) if rates else None,
        "drained_s": timing["drained_s"], "days_close_due": len(due), "days_closed": len(closed),
        "verdict": memory_flat and lag_bounded and timing["drained_s"] is not None and len(closed) == len(due),
    }


def run_soak(settings: SoakSettings, out: Path, workdir: Path, progress: Callable[[str], None] = print) -> dict:
    """Run the soak; write ``<out>.json`` and ``<out>.png``; return what the JSON holds."""
    from geo.hotspots import load_hotspots
    from stream.bench import Worker, wait_ready
    from stream.broker import EmbeddedBroker
    from stream.demo import demo_hotspots_path
    from stream.schedule import draw_schedule

    workdir.mkdir(parents=True, exist_ok=True)
    hotspots_path = demo_hotspots_path()
    hs = load_hotspots(hotspots_path)
    # Enough scheduled days for the fewest fixes an officer-day simulate_day gives (and then some).
    n_days = math.ceil(settings.rate * settings.seconds / (settings.officers * FIXES_PER_OFFICER_DAY * 0.8)) + 3
    schedule = draw_schedule(hs.ids, first_day=FIRST_DAY, days=n_days, share=0.5, seed=settings.seed,
                             groups=hs.groups)
    schedule.write_csv(workdir / "schedule.csv")
    started = time.perf_counter()
    load = make_load(hotspots_path, schedule, settings)
    progress(f"simulated {len(load):,} fixes of {settings.officers} officers over {len(load.days)} policing days "
             f"in {time.perf_counter() - started:.0f} s; workdir {workdir}")
    prefix = f"soak{uuid.uuid4().hex[:6]}."
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    worker = None
    try:
        broker.start()
        extra = ["--schedule", str(workdir / "schedule.csv")]
        if settings.worker_fetch_max_wait_ms:
            (workdir / "worker.toml").write_text(f"fetch_max_wait_ms = {settings.worker_fetch_max_wait_ms}\n")
            extra += ["--config", str(workdir / "worker.toml")]
        worker = Worker(broker.bootstrap, prefix, hotspots_path, workdir, settings.partitions, "worker", *extra)
        wait_ready([worker])
        soak = Soak(settings, load, broker.bootstrap, prefix, worker, broker.pid, len(hs), progress)
        timing = asyncio.run(soak.run())
        due = set(soak.expected_closed())
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
    days = [{"day": d.isoformat(), "input_from_s": round(float(load.day_first[k]) / settings.rate, 2),
             "close_due": d.isoformat() in due, "hotspots": len(hs),
             "rows": soak.closes.get(d.isoformat(), {}).get("rows", 0),
             "closed_at_s": soak.closes.get(d.isoformat(), {}).get("first_s")}
            for k, d in enumerate(load.days) if load.day_first[k] < soak.offered]
    result = {"settings": dataclasses.asdict(settings), "workdir": str(workdir),
              "load": {"officers": settings.officers, "hotspots": len(hs), "fixes": len(load),
                       "first_day": FIRST_DAY.isoformat(), "tick_ms": settings.tick_ms,
                       "partitions": settings.partitions},
              "summary": summarise(settings, soak.samples, days, timing), "days": days, "samples": soak.samples}
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=1) + "\n")
    draw(result, Path(f"{out}.png"))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.soak", description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(SoakSettings):  # --minutes, --rate, --day-s, --tick-ms, --lag-bound-s, ...
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    p.add_argument("--out", default="benchmarks/results/soak", help="writes <out>.json and <out>.png")
    p.add_argument("--workdir", help="logs and the schedule (default /tmp/soak/<time>)")
    args = vars(p.parse_args(argv))
    out, workdir = Path(args.pop("out")), args.pop("workdir")
    workdir = Path(workdir or f"/tmp/soak/{time.strftime('%Y%m%d-%H%M%S')}")

    def stop(signum, frame):  # SIGTERM: unwind, so the finally blocks stop the worker and the broker
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    result = run_soak(SoakSettings(**args), out, workdir)
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out}.json and {out}.png")
    return 0 if result["summary"]["verdict"] else 1


if __name__ == "__main__":
    sys.exit(main())
