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
from stream.events import schema
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


async def collect(bootstrap: str, prefix: str, done, timeout_s: float = 120.0) -> dict[str, list]:
    """Read the output topics until ``done(out)`` holds, then one more quiet fetch."""
    topics = {prefix + t: t for t in ("dwell-intervals", "patrol-events", "location-fixes-dead-letter")}
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"{prefix}reader", session_timeout_ms=6000, heartbeat_interval_ms=1000)
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
        body = json.loads(m.value)
        by_id[body["visit_id"]] = (body["officer_id"], body["hotspot_id"], body["start"], body["end"], body["fixes"])
    return sorted(by_id.values())


def headers(m) -> dict[str, bytes]:
    return dict(m.headers)


def test_stream_equals_replay(broker, namespace, start_worker, tmp_path):
    records = day_records(seed=7)
    expected = replay(write_jsonl(records, tmp_path / "day.jsonl"), HOTSPOTS)
    want_visits = sorted(zip(expected.visits["officer_id"].tolist(), expected.visits["hotspot_id"].tolist(),
                             expected.visits["start"].tolist(), expected.visits["end"].tolist(),
                             expected.visits["fixes"].tolist()))
    want_patrols = sorted(expected.patrols.rows())
    want_late = sorted(int(line) for line, reason in zip(expected.rejected["line"], expected.rejected["reason"])
                       if reason == "late")
    assert len(want_visits) > 50 and len(want_patrols) > 5 and want_late

    worker = start_worker(HOTSPOTS, "--partitions", str(PARTITIONS))
    asyncio.run(produce(broker.bootstrap, namespace["prefix"] + "location-fixes", records))

    def done(out):
        return (len(visit_rows(out["dwell-intervals"])) >= len(want_visits)
                and len({json.loads(m.value)["event_id"] for m in out["patrol-events"]}) >= len(want_patrols))

    out = asyncio.run(collect(broker.bootstrap, namespace["prefix"], done))
    assert worker.proc.poll() is None, worker.log()

    assert visit_rows(out["dwell-intervals"]) == want_visits
    patrols = {json.loads(m.value)["event_id"]: json.loads(m.value) for m in out["patrol-events"]}
    got_patrols = sorted((p["event_id"], p["officer_id"], p["hotspot_id"], p["start"], p["end"], p["duration_s"])
                         for p in patrols.values())
    assert got_patrols == want_patrols  # the same deterministic ids as the replay
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
    for kind, messages in (("visit.closed", out["dwell-intervals"]), ("patrol.completed", out["patrol-events"])):
        for m in messages:
            jsonschema.validate(json.loads(m.value), schema(kind))
            h = headers(m)
            assert h["ce_specversion"] == b"1.0" and h["ce_type"].endswith(kind.encode())
            assert h["content-type"] == b"application/json" and m.key == json.loads(m.value)["hotspot_id"].encode()
    assert worker.stop() == 0
