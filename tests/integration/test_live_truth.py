"""Live truth on the real broker: what the stream says at any moment is what the replay of the fixes so
far says, not only once a policing day has closed.

A simulated policing day (150 officers over the 57 Nottingham hot spots) is written to
``location-fixes`` at full speed, then nothing: no next shift's fixes, no day close. Radios stop at the
end of a shift, many inside a hot spot. Within ``max_gap_s + 60 s`` of wall clock after the last fix,
every visit of the replay must be on ``dwell-intervals`` with the replay's bounds, nothing else, and no
officer may still count as present. The same for a day whose radios stop at random times and whose
partitions 1 and 3 get no fixes at all for an hour of event time. Both days run at once, each with a
worker of its own, with the worker's default ``idle_advance_s``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import urllib.request
import uuid

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from geo.hotspots import load_hotspots
from stream.broker import free_port
from stream.engine import RuleSettings
from stream.producer import fix_json, partition_of, produce
from stream.replay import replay
from stream.schedule import draw_schedule
from stream.simulate import SimulationSettings, simulate_day
from tests.integration.conftest import WorkerProcess
from tests.integration.test_streaming import (HOTSPOTS, _plain_row, day_closed_rows, replay_visit_rows, visit_rows,
                                              write_jsonl)

pytestmark = pytest.mark.integration

DAY = dt.date(2024, 3, 30)
PARTITIONS = 4
# The rules of the issue that found the fault (issue 16), fixed for every radio: with adaptive rules a
# 60 s radio's gap limit is 240 s, and the bound below would be its limit plus a minute.
RULE_FLAGS = ["--max-gap-s", "120", "--exit-margin-m", "0", "--exit-grace-s", "0", "--visit-bounds", "fixes",
              "--rules", "fixed"]
RULES = RuleSettings(max_gap_s=120, exit_margin_m=0, exit_grace_s=0, visit_bounds="fixes", scaling="fixed")
BOUND_S = RULES.max_gap_s + 60


def simulated_day(seed: int, officers: int = 150):
    hs = load_hotspots(HOTSPOTS)
    return simulate_day(hs, draw_schedule(hs.ids, first_day=DAY, days=1, seed=seed), DAY,
                        SimulationSettings(officers=officers, seed=seed))


def records_of(sim, keep: np.ndarray) -> list[tuple[bytes, bytes]]:
    return [(str(o).encode(), fix_json(str(o), int(t), la, lo, a))
            for o, t, la, lo, a in zip(sim.officer_id[keep], sim.ts_ms[keep], sim.lat[keep], sim.lon[keep],
                                       sim.accuracy_m[keep])]


def end_of_shift_day(seed: int) -> list[tuple[bytes, bytes]]:
    sim = simulated_day(seed)
    return records_of(sim, np.ones(len(sim), bool))


def random_stops_day(seed: int) -> list[tuple[bytes, bytes]]:
    """Radios stop at random times of the shift; partitions 1 and 3 hear nothing for an hour."""
    sim = simulated_day(seed)
    rng = np.random.default_rng(seed)
    first, last = int(sim.ts_ms.min()), int(sim.ts_ms.max())
    officers = np.unique(sim.officer_id.astype(str))
    stop = dict(zip(officers.tolist(), rng.uniform(first + 1_800_000, last, officers.size).astype(np.int64).tolist()))
    partition = {o: partition_of(o.encode(), PARTITIONS) for o in officers.tolist()}
    quiet_from = first + (last - first) // 3
    keep = np.array([t < stop[o] and not (partition[o] in (1, 3) and quiet_from <= t < quiet_from + 3_600_000)
                     for o, t in zip(sim.officer_id.astype(str).tolist(), sim.ts_ms.tolist())])
    return records_of(sim, keep)


def officers_present(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "hotspot_dwell_officers_present")


async def visits_until(bootstrap: str, topic: str, want: list, timeout_s: float) -> tuple[list, float]:
    """The visits read from ``topic`` once it holds all of ``want`` (and two quiet seconds more), and the
    monotonic time at which it first did."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    messages: list = []
    deadline = time.monotonic() + timeout_s
    want_set = set(want)
    try:
        while time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                messages += msgs
            if want_set <= set(visit_rows(messages)):
                at = time.monotonic()
                for msgs in (await consumer.getmany(timeout_ms=2000)).values():
                    messages += msgs
                return visit_rows(messages), at
    finally:
        await consumer.stop()
    got = set(visit_rows(messages))
    raise AssertionError(f"after {timeout_s} s, {len(want_set - got)} of {len(want_set)} visits missing, "
                         f"e.g. {sorted(want_set - got)[:3]}")


def test_silent_radios_close_their_visits_within_max_gap_of_the_last_fix(broker, tmp_path):
    days = {"end-of-shift": end_of_shift_day(seed=11), "random-stops": random_stops_day(seed=12)}
    hs = load_hotspots(HOTSPOTS)
    expected, workers, topics = {}, {}, {}
    for name, records in days.items():
        result = replay(write_jsonl(records, tmp_path / f"{name}.jsonl"), hs, rules=RULES)
        expected[name] = replay_visit_rows(result)
        assert len(expected[name]) > 1000
        tag = uuid.uuid4().hex[:8]
        prefix = f"t{tag}."
        topics[name] = prefix
        port = free_port()
        workers[name] = WorkerProcess(
            ["--brokers", broker.bootstrap, "--hotspots", str(HOTSPOTS), "--topic-prefix", prefix, "--app-id",
             f"app-{tag}", "--state-dir", str(tmp_path / f"state-{name}"), "--partitions", str(PARTITIONS),
             "--no-time-check", "--loglevel", "info", "--metrics-port", str(port), *RULE_FLAGS],
            tmp_path / f"{name}.log", port)
    try:
        for w in workers.values():
            w.wait_ready(timeout_s=120)

        async def one(name):
            sent = await produce(broker.bootstrap, topics[name] + "location-fixes", days[name])
            assert sent == len(days[name])
            last_fix_at = time.monotonic()
            got, at = await visits_until(broker.bootstrap, topics[name] + "dwell-intervals", expected[name],
                                         timeout_s=BOUND_S + 120)
            return got, at - last_fix_at

        outcomes = asyncio.run(_gather([one(name) for name in days]))
        for name, (got, seconds) in zip(days, outcomes):
            print(f"{name}: {len(got)} visits, the last {seconds:.1f} s after the last fix")
            assert got == expected[name], name  # the replay's visits with its bounds, and nothing else
            assert seconds <= BOUND_S, f"{name}: the last visits came {seconds:.0f} s after the last fix"
            deadline = time.monotonic() + 15
            while officers_present(workers[name].metrics_port) != 0:  # refreshed every 2 s
                assert time.monotonic() < deadline, f"{name}: officers still present"
                time.sleep(0.5)
            assert workers[name].proc.poll() is None, workers[name].log()[-3000:]
    finally:
        for w in workers.values():
            w.stop()


async def _gather(coros):
    return await asyncio.gather(*coros)


def metric(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    values = [s.value for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name]
    return sum(values) if values else None


async def read_all(bootstrap: str, prefix: str) -> list:
    """Everything on ``patrol-events`` now."""
    consumer = AIOKafkaConsumer(prefix + "patrol-events", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    got: list = []
    try:
        while batch := await consumer.getmany(timeout_ms=1000):
            got += [m for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return got


def test_a_quiet_partitions_day_closes_from_the_wall_clock_across_a_kill(broker, namespace, start_worker, tmp_path):
    """A night shift's fixes up to 05:59, then nothing: the day (06:00 to 06:00) closes from the wall clock's
    advance alone, on every partition, including those that never had a fix. The worker is SIGKILLed
    while the advance is under way and restarted: each hot spot-day closes once (repeats only with the
    same id and the same body) and equals the replay's row."""
    hs = load_hotspots(HOTSPOTS)
    schedule_path = tmp_path / "schedule.csv"
    draw_schedule(hs.ids, first_day=DAY, days=1, seed=5).write_csv(schedule_path)
    sim = simulate_day(hs, draw_schedule(hs.ids, first_day=DAY, days=1, seed=5), DAY,
                       SimulationSettings(officers=5, seed=5, shift_start="02:00", shift_end="05:59"))
    records = records_of(sim, np.ones(len(sim), bool))
    partitions = 8  # five officers: some partitions never get a fix
    assert len({partition_of(k, partitions) for k, _ in records}) < partitions
    expected = replay(write_jsonl(records, tmp_path / "night.jsonl"), hs, schedule_path)

    want_days = sorted(_plain_row(r) for r in expected.hotspot_days.rows())
    assert len(want_days) == len(hs) and sum(r[6] for r in want_days) > 5  # every hot spot, some visits
    args = ["--partitions", str(partitions), "--schedule", str(schedule_path), "--idle-advance-s", "2",
            "--day-close-grace-s", "10"]
    worker = start_worker(HOTSPOTS, *args)
    worker.wait_ready(timeout_s=120)
    asyncio.run(produce(broker.bootstrap, namespace["prefix"] + "location-fixes", records))
    deadline = time.monotonic() + 120
    while not (metric(worker.metrics_port, "hotspot_dwell_idle_advances_total") or 0) > 0:
        assert time.monotonic() < deadline and worker.proc.poll() is None, worker.log()[-3000:]
        time.sleep(0.2)
    assert not day_closed_rows({"patrol-events": asyncio.run(read_all(broker.bootstrap, namespace["prefix"]))})
    worker.kill()  # the advance is under way; the day's end (and its grace) is a minute or more away
    restarted = start_worker(HOTSPOTS, *args)

    async def day_closed_messages():
        consumer = AIOKafkaConsumer(namespace["prefix"] + "patrol-events", bootstrap_servers=broker.bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        got: list = []
        try:
            stop = time.monotonic() + 300
            while time.monotonic() < stop:
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    got += msgs
                if len(day_closed_rows({"patrol-events": got})) >= len(want_days):
                    for msgs in (await consumer.getmany(timeout_ms=3000)).values():
                        got += msgs
                    return got
        finally:
            await consumer.stop()
        raise AssertionError(f"{len(day_closed_rows({'patrol-events': got}))} of {len(want_days)} hot spot-days "
                             "closed")

    messages = asyncio.run(day_closed_messages())
    assert day_closed_rows({"patrol-events": messages}) == want_days
    bodies: dict[str, set] = {}
    for m in messages:
        if dict(m.headers)["ce_type"].endswith(b"hotspot.day_closed"):
            bodies.setdefault(dict(m.headers)["ce_id"].decode(), set()).add(m.value)
    assert len(bodies) == len(want_days) and all(len(b) == 1 for b in bodies.values())
    assert restarted.proc.poll() is None, restarted.log()[-3000:]
