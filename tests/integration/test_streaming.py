"""The stream against the real (embedded) broker gives exactly what the replay gives."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer

import geo
from geo.hotspots import load_hotspots
from stream.events import event_type, schema
from stream.producer import clock_keys, fix_json, partition_of, produce
from stream.replay import replay
from stream.schedule import draw_schedule
from stream.simulate import SimulationSettings, simulate_day

pytestmark = pytest.mark.integration

HOTSPOTS = Path(geo.NOTTINGHAM_HOTSPOTS_PATH)
DAY = dt.date(2024, 3, 30)
PARTITIONS = 4


def day_records(seed: int, officers: int = 6) -> list[tuple[bytes, bytes]]:
    """A simulated policing day as (key, value) records in delivery order, then one
    record per partition a day later, which moves every partition's event time
    past the day's close (as the next shift's fixes would)."""
    hs = load_hotspots(HOTSPOTS)
    sim = simulate_day(hs, draw_schedule(hs.ids, first_day=DAY, days=1, seed=seed), DAY,
                       SimulationSettings(officers=officers, seed=seed))
    records = [(str(o).encode(), fix_json(str(o), int(t), la, lo, a))
               for o, t, la, lo, a in zip(sim.officer_id, sim.ts_ms, sim.lat, sim.lon, sim.accuracy_m)]
    later = int(sim.ts_ms.max()) + 86_400_000
    records += [(k, fix_json(k.decode(), later, 52.0, -1.0)) for k in clock_keys(PARTITIONS)]
    return records


def write_jsonl(records, path: Path) -> Path:
    path.write_bytes(b"".join(v + b"\n" for _, v in records))
    return path


async def collect(bootstrap: str, prefix: str, done, timeout_s: float = 120.0,
                  consumer_kwargs: dict | None = None) -> dict[str, list]:
    """Read the output topics until ``done(out)`` holds, then one more quiet fetch."""
    topics = {prefix + t: t for t in ("dwell-intervals", "patrol-events", "location-fixes-dead-letter")}
    # No group: every call reads every output from the start (a group would
    # commit and make a second call skip what the first one saw).
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                                **(consumer_kwargs or {}))
    await consumer.start()
    out: dict[str, list] = {t: [] for t in topics.values()}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, msgs in batch.items():
                out[topics[tp.topic]] += msgs
            if done(out):
                extra = await consumer.getmany(timeout_ms=1500)
                for tp, msgs in extra.items():
                    out[topics[tp.topic]] += msgs
                return out
    finally:
        await consumer.stop()
    raise AssertionError(f"outputs incomplete after {timeout_s} s: { {k: len(v) for k, v in out.items()} }")


def visit_rows(messages) -> list[tuple]:
    """Distinct visits (the stream may repeat one with the same id)."""
    by_id = {}
    for m in messages:
        if not dict(m.headers)["ce_type"].endswith(b"visit.closed"):
            continue  # the in-band day marks
        body = json.loads(m.value)
        by_id[body["visit_id"]] = (body["officer_id"], body["hotspot_id"], body["start"], body["end"], body["fixes"],
                                   body["interval_s"], body["gap_limit_s"])
    return sorted(by_id.values())


def replay_visit_rows(result) -> list[tuple]:
    """A replay's visits as :func:`visit_rows` gives the stream's."""
    v = result.visits
    return sorted(zip(v["officer_id"].tolist(), v["hotspot_id"].tolist(), v["start"].tolist(), v["end"].tolist(),
                      v["fixes"].tolist(), v["interval_s"].tolist(), v["gap_limit_s"].tolist()))


def headers(m) -> dict[str, bytes]:
    return dict(m.headers)


def patrol_bodies(out) -> dict[str, dict]:
    return {b["event_id"]: b for b in (json.loads(m.value) for m in out["patrol-events"]
                                       if headers(m)["ce_type"].endswith(b"patrol.completed"))}


DAY_COLUMNS = ("policing_day", "hotspot_id", "scheduled", "target_minutes", "presence_s", "officer_s", "visits",
               "patrols", "met", "window_presence_s")


def _plain_row(row) -> tuple:
    return tuple(None if isinstance(v, float) and v != v else (round(v, 3) if isinstance(v, float) else v)
                 for v in row)


def day_closed_rows(out) -> list[tuple]:
    by_id = {}
    for m in out["patrol-events"]:
        if headers(m)["ce_type"].endswith(b"hotspot.day_closed"):
            body = json.loads(m.value)
            by_id[body["event_id"]] = _plain_row(tuple(body[c] for c in DAY_COLUMNS))
    return sorted(by_id.values())


def test_stream_equals_replay(broker, namespace, start_worker, tmp_path):
    records = day_records(seed=7)
    hs = load_hotspots(HOTSPOTS)
    schedule_path = tmp_path / "schedule.csv"
    draw_schedule(hs.ids, first_day=DAY, days=1, seed=7).write_csv(schedule_path)
    expected = replay(write_jsonl(records, tmp_path / "day.jsonl"), hs, schedule_path)
    want_visits = replay_visit_rows(expected)
    want_patrols = sorted(expected.patrols.rows())
    want_late = sorted(int(line) for line, reason in zip(expected.rejected["line"], expected.rejected["reason"])
                       if reason == "late")
    assert len(want_visits) > 50 and len(want_patrols) > 5 and want_late
    want_days = sorted(_plain_row(r) for r in expected.hotspot_days.rows())
    assert len(want_days) == 57
    assert any(r[8] for r in want_days) and not all(r[8] for r in want_days if r[2])  # some met, some not

    worker = start_worker(HOTSPOTS, "--partitions", str(PARTITIONS), "--schedule", str(schedule_path))
    asyncio.run(produce(broker.bootstrap, namespace["prefix"] + "location-fixes", records))

    def done(out):
        return (len(visit_rows(out["dwell-intervals"])) >= len(want_visits)
                and len(patrol_bodies(out)) >= len(want_patrols)
                and len(day_closed_rows(out)) >= len(want_days))

    out = asyncio.run(collect(broker.bootstrap, namespace["prefix"], done))
    assert worker.proc.poll() is None, worker.log()

    assert visit_rows(out["dwell-intervals"]) == want_visits
    patrols = patrol_bodies(out)
    got_patrols = sorted((p["event_id"], p["officer_id"], p["hotspot_id"], p["start"], p["end"], p["duration_s"])
                         for p in patrols.values())
    assert got_patrols == want_patrols  # the same deterministic ids as the replay
    # The evaluation table, row for row, from hotspot.day_closed events.
    assert day_closed_rows(out) == want_days
    # Late fixes reach the dead-letter topic with their original bytes.
    line_of = {}
    per_partition = [0] * PARTITIONS
    for line, (key, _) in enumerate(records, start=1):
        p = partition_of(key, PARTITIONS)
        line_of[(p, per_partition[p])] = line
        per_partition[p] += 1
    late = sorted(line_of[(int(headers(m)["source_partition"]), int(headers(m)["source_offset"]))]
                  for m in out["location-fixes-dead-letter"] if headers(m)["reason"] == b"late")
    assert late == want_late
    for m in out["location-fixes-dead-letter"]:
        line = line_of[(int(headers(m)["source_partition"]), int(headers(m)["source_offset"]))]
        assert m.value == records[line - 1][1]
    # Every event validates against its JSON Schema and carries CloudEvents headers.
    kinds = set()
    for m in out["dwell-intervals"] + out["patrol-events"]:
        kind = event_type(m.headers)
        kinds.add(kind)
        jsonschema.validate(json.loads(m.value), schema(kind))
        h = headers(m)
        assert h["ce_specversion"] == b"1.0" and h["content-type"] == b"application/json" and h["ce_id"]
        assert m.key == json.loads(m.value)["hotspot_id"].encode()
    assert kinds == {"visit.opened", "visit.closed", "patrol.completed", "hotspot.dosage_met", "hotspot.day_closed"}
    # dosage_met once per met scheduled hot spot-day (by id)
    met = {json.loads(m.value)["hotspot_id"] for m in out["patrol-events"] if event_type(m.headers) == "hotspot.dosage_met"}
    assert met == {r[1] for r in want_days if r[8]}
    assert worker.stop() == 0


def test_simulate_command_writes_truth_and_produces_to_kafka(broker, namespace, tmp_path):
    from stream.cli import main

    truth = tmp_path / "truth.csv"
    out = tmp_path / "fixes.jsonl"
    assert main(["simulate", "--hotspots", str(HOTSPOTS), "--day", DAY.isoformat(), "--officers", "2", "--out",
                 str(out), "--truth", str(truth), "--brokers", broker.bootstrap, "--topic-prefix",
                 namespace["prefix"], "--rate", "20000"]) == 0
    n_lines = len(out.read_bytes().splitlines())
    assert truth.read_text().startswith("officer_id,hotspot_id,start,end,duration_s,fixes\n")

    async def count():
        consumer = AIOKafkaConsumer(namespace["prefix"] + "location-fixes", bootstrap_servers=broker.bootstrap,
                                    auto_offset_reset="earliest", group_id=namespace["prefix"] + "count",
                                    session_timeout_ms=6000, heartbeat_interval_ms=1000)
        await consumer.start()
        values = []
        try:
            while len(values) < n_lines:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, f"only {len(values)} of {n_lines} records"
                values += [m.value for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()
        return values

    assert sorted(asyncio.run(count())) == sorted(out.read_bytes().splitlines())


def test_a_visit_across_the_0600_boundary_counts_in_both_days(broker, namespace, start_worker, tmp_path):
    """Regression: the day's mark used to go out while a visit that began in
    the day was still open, so stage 2 dropped its first part."""
    hs = load_hotspots(HOTSPOTS)
    lon, lat = (v[hs.index_of("NOT-001")] for v in hs.centroids_wgs84)
    t0 = int(dt.datetime(2024, 3, 30, 5, 40, tzinfo=dt.timezone.utc).timestamp() * 1000)
    records = [(b"night-1", fix_json("night-1", t0 + i * 10_000, lat, lon)) for i in range(300)]  # to 06:29:50
    records += [(b"night-1", fix_json("night-1", t0 + 3_000_000 + i * 30_000, lat + 0.01, lon)) for i in range(30)]
    later = t0 + 2 * 86_400_000
    records += [(k, fix_json(k.decode(), later, 52.0, -1.0)) for k in clock_keys(PARTITIONS)]
    expected = replay(write_jsonl(records, tmp_path / "night.jsonl"), hs)
    want_days = sorted(_plain_row(r) for r in expected.hotspot_days.rows())
    by_day = {(r[0], r[1]): r for r in want_days}
    assert by_day[("2024-03-29", "NOT-001")][4] == 1200.0 and by_day[("2024-03-29", "NOT-001")][7] == 1

    start_worker(HOTSPOTS, "--partitions", str(PARTITIONS))
    asyncio.run(produce(broker.bootstrap, namespace["prefix"] + "location-fixes", records))
    out = asyncio.run(collect(broker.bootstrap, namespace["prefix"],
                              lambda o: len(day_closed_rows(o)) >= len(want_days)))
    assert day_closed_rows(out) == want_days
