"""The streaming demo: embedded broker, a worker, a simulated policing day, a live view.

``hotspot-dwell demo`` (the README's main command) starts everything itself,
plays the day's fixes into ``location-fixes`` in event-time order at a
chosen speed, shows what the control room would see as it happens, and ends
with the day's compliance table, written tables and charts. Every process it
started is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geo.hotspots import HotspotSet, load_hotspots
from stream.broker import EmbeddedBroker, die_with_parent, free_port, stop_process
from stream.demo import DEMO_DAY, demo_hotspots_path
from stream.events import event_type
from stream.producer import clock_keys, fix_json, produce
from stream.schedule import draw_schedule
from stream.simulate import SimulationSettings, simulate_day
from stream.tables import Table, compliance_table

PARTITIONS = 4
PREFIX = "demo."


@dataclass
class LiveState:
    """What the control room sees, from the engine's output topics."""

    scheduled: set[str]
    present: dict[str, set[str]] = field(default_factory=dict)  # hot spot -> officers inside now
    minutes: dict[str, float] = field(default_factory=dict)  # closed visit minutes so far
    patrols: int = 0
    met: set[str] = field(default_factory=set)
    day_rows: dict[str, dict] = field(default_factory=dict)
    visits: int = 0
    seen_ids: set[bytes] = field(default_factory=set)

    def apply(self, message) -> None:
        kind = event_type(message.headers)
        # At-least-once: a worker restart may repeat an event, always with its id.
        event_id = dict(message.headers or ()).get("ce_id")
        if event_id is not None:
            if event_id in self.seen_ids:
                return
            self.seen_ids.add(event_id)
        if kind in ("visit.opened", "visit.closed", "patrol.completed", "hotspot.dosage_met", "hotspot.day_closed"):
            body = json.loads(message.value)
        if kind == "visit.opened":
            self.present.setdefault(body["hotspot_id"], set()).add(body["officer_id"])
        elif kind == "visit.closed":
            self.present.get(body["hotspot_id"], set()).discard(body["officer_id"])
            self.minutes[body["hotspot_id"]] = self.minutes.get(body["hotspot_id"], 0.0) + body["duration_s"] / 60
            self.visits += 1
        elif kind == "patrol.completed":
            self.patrols += 1
        elif kind == "hotspot.dosage_met":
            self.met.add(body["hotspot_id"])
        elif kind == "hotspot.day_closed":
            self.day_rows[body["hotspot_id"]] = body


def render(state: LiveState, hs: HotspotSet, clock_ms: int, sent: int, total: int) -> str:
    now = dt.datetime.fromtimestamp(clock_ms / 1000, tz=dt.timezone.utc).astimezone()
    n_s = len(state.scheduled)
    lines = [f"hotspot-dwell demo  policing day {DEMO_DAY}  simulated time {now:%H:%M}  "
             f"fixes {sent:,}/{total:,}",
             f"scheduled {n_s}  met {len(state.met)}  compliance so far {len(state.met) / n_s:.0%}  "
             f"visits {state.visits}  patrols {state.patrols}", "",
             f"{'hot spot':<9} {'district':<26} {'sched':<5} {'met':<4} {'min':>6}  officers there now"]
    order = sorted(hs.ids, key=lambda h: (-len(state.present.get(h, ())), -state.minutes.get(h, 0.0)))[:15]
    group = dict(zip(hs.ids, hs.groups))
    for h in order:
        here = sorted(state.present.get(h, ()))
        lines.append(f"{h:<9} {group[h][:26]:<26} {'yes' if h in state.scheduled else '':<5} "
                     f"{'yes' if h in state.met else '':<4} {state.minutes.get(h, 0.0):6.1f}  "
                     f"{', '.join(here) if here else ''}")
    return "\n".join(lines)


async def _play(bootstrap: str, records: list[tuple[int, bytes, bytes]], seconds: float, state: LiveState,
                hs: HotspotSet, out) -> None:
    """Produce in event-time order, ``seconds`` of wall time for the whole day, while drawing the view."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(PREFIX + "dwell-intervals", PREFIX + "patrol-events", bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", group_id="demo-view", session_timeout_ms=6000,
                                heartbeat_interval_ms=1000)
    await consumer.start()
    tty = out.isatty()
    try:
        t0_ms, t1_ms = records[0][0], records[-1][0]
        started = time.monotonic()
        pos = 0
        last_draw = 0.0
        while pos < len(records):
            _check_stop()
            clock = t0_ms + (time.monotonic() - started) / seconds * (t1_ms - t0_ms)
            end = pos
            while end < len(records) and records[end][0] <= clock:
                end += 1
            if end > pos:
                await produce(bootstrap, PREFIX + "location-fixes", [(k, v) for _, k, v in records[pos:end]])
                pos = end
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                for m in msgs:
                    state.apply(m)
            if time.monotonic() - last_draw >= (1.0 if tty else 5.0):
                view = render(state, hs, int(min(clock, t1_ms)), pos, len(records))
                print("\x1b[H\x1b[2J" + view if tty else view.splitlines()[1], file=out, flush=True)
                last_draw = time.monotonic()
        # The day's close: wait until every hot spot has its summary row.
        deadline = time.monotonic() + 90
        while len(state.day_rows) < len(hs) and time.monotonic() < deadline:
            _check_stop()
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    state.apply(m)
    finally:
        await consumer.stop()


DAY_COLUMN_TYPES = {"policing_day": object, "hotspot_id": object, "scheduled": bool, "target_minutes": float,
                    "presence_s": float, "officer_s": float, "visits": int, "patrols": int, "met": bool,
                    "window_presence_s": float}


def wait_ready(metrics_port: int, worker: subprocess.Popen, timeout_s: float = 60.0) -> float:
    """Seconds until the worker reports ready on its metrics endpoint (both consumer groups assigned)."""
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        _check_stop()
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1) as r:
                if b"hotspot_dwell_ready 1.0" in r.read():
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the worker was not ready within {timeout_s:.0f} s")


_STOP = threading.Event()


def _interrupt(signum, frame):
    # Inside the event loop an exception here would land in whatever task is
    # running; a flag is checked where stopping is safe.
    _STOP.set()


def _check_stop() -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt


def _start_prometheus(metrics_port: int, out_dir: Path):
    """A real Prometheus with the shipped rules scraping the worker, when one is installed."""
    from stream.promserver import PrometheusServer, prometheus_binary

    if prometheus_binary() is None:
        print("(no prometheus installed: apt-get install prometheus for the control-room picture)", flush=True)
        return None
    prom = PrometheusServer([f"127.0.0.1:{metrics_port}"], workdir=out_dir / "prometheus").start()
    print(f"Prometheus on {prom.url} (the shipped deploy/prometheus rules), scraping the worker", flush=True)
    return prom


def _control_room_picture(prom, hs, patrols: int, out_dir: Path) -> Path:
    from stream.control_room import draw, snapshot

    # The last scrape may predate the day's close: wait for the final figures.
    prom.wait_for("sum(hotspot_dwell_hotspot_patrols)", lambda r: bool(r) and r[0]["value"] == patrols,
                  timeout_s=60)
    prom.wait_for("hotspot_dwell:compliance:ratio", lambda r: bool(r), timeout_s=60)
    return draw(snapshot(prom), hs, out_dir / "control-room.png", title=f"Control room, policing day {DEMO_DAY}")


def run_stream_demo(out_dir: Path, *, officers: int = 8, seed: int = 7, seconds: float = 30.0) -> int:
    from stream.charts import draw_compliance_by_day, draw_presence_per_hotspot
    from stream.cli import _print_compliance

    out_dir.mkdir(parents=True, exist_ok=True)
    hs_path = demo_hotspots_path()
    hs = load_hotspots(hs_path)
    schedule = draw_schedule(hs.ids, first_day=DEMO_DAY, days=1, share=0.5, seed=seed, groups=hs.groups)
    schedule.write_csv(out_dir / "schedule.csv")
    sim = simulate_day(hs, schedule, DEMO_DAY, SimulationSettings(officers=officers, seed=seed))
    order = np.argsort(sim.ts_ms, kind="stable")  # played in event time; late ones keep their place
    records = [(int(sim.ts_ms[i]), str(sim.officer_id[i]).encode(),
                fix_json(str(sim.officer_id[i]), int(sim.ts_ms[i]), sim.lat[i], sim.lon[i], sim.accuracy_m[i]))
               for i in order]
    later = records[-1][0] + 86_400_000
    records += [(later, k, fix_json(k.decode(), later, 52.0, -1.0)) for k in clock_keys(PARTITIONS)]
    metrics_port = free_port()
    broker = EmbeddedBroker(log_path=out_dir / "broker.log")
    worker = None
    prom = None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    _STOP.clear()
    for sig in previous:  # also when started with SIGINT ignored (a background job)
        signal.signal(sig, _interrupt)
    try:
        broker.start()
        print(f"broker on {broker.bootstrap}; starting a worker; metrics on http://127.0.0.1:{metrics_port}/metrics",
              flush=True)
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--brokers", broker.bootstrap, "--hotspots", str(hs_path),
             "--schedule", str(out_dir / "schedule.csv"), "--topic-prefix", PREFIX, "--app-id", "demo",
             "--partitions", str(PARTITIONS), "--state-dir", str(out_dir / "worker-state"), "--no-time-check",
             "--metrics-port", str(metrics_port), "--loglevel", "warning"],
            stdout=open(out_dir / "worker.log", "wb"), stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=die_with_parent)
        seconds_to_ready = wait_ready(metrics_port, worker)
        print(f"worker ready in {seconds_to_ready:.1f} s; playing the day in {seconds:.0f} s", flush=True)
        prom = _start_prometheus(metrics_port, out_dir)
        state = LiveState(scheduled={e.hotspot_id for e in schedule.entries})
        asyncio.run(_play(broker.bootstrap, records, seconds, state, hs, sys.stdout))
        rows = [state.day_rows[h] for h in sorted(state.day_rows)]
        if len(rows) < len(hs):
            print(f"only {len(rows)} of {len(hs)} hot spots closed their day; see {out_dir / 'worker.log'}")
            return 1
        table = Table({c: np.array([np.nan if r[c] is None else r[c] for r in rows], dtype=t)
                       for c, t in DAY_COLUMN_TYPES.items()})
        compliance = compliance_table(table, hs)
        table.write_csv(out_dir / "hotspot_days.csv")
        compliance.write_csv(out_dir / "compliance.csv")
        charts = [draw_compliance_by_day(compliance, out_dir / "compliance_by_day.png"),
                  draw_presence_per_hotspot(table, out_dir / "presence_per_hotspot.png")]
        print(f"\npolicing day {DEMO_DAY} closed: {state.visits} visits, {state.patrols} patrols\n")
        _print_compliance(compliance)
        print(f"\nwrote {out_dir / 'hotspot_days.csv'}, {out_dir / 'compliance.csv'}")
        for c in charts:
            print(f"wrote {c}")
        if prom is not None:
            patrols = sum(int(r["patrols"]) for r in rows)
            print(f"wrote {_control_room_picture(prom, hs, patrols, out_dir)} (the control-room view, "
                  f"from Prometheus)")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the worker and the broker", flush=True)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if prom is not None:
            prom.stop()
        stop_process(worker, 30.0)
        broker.stop()
