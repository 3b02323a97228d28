"""The worker runs with the partition count of the input topic it finds (issue 16, "Partition layout").

Regression: with ``location-fixes`` created beforehand with 8 partitions (as a
force's platform team would), the worker created ``<app id>-officer-checkpoints``
with its default 4, waited 40 s on StaleMetadata for partition 5 and exited
with "a rebalance could not be completed".
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from geo.hotspots import load_hotspots
from stream.producer import clock_keys, fix_json, partition_of, produce
from stream.replay import replay
from stream.schedule import draw_schedule
from stream.settings import INTERNAL_TOPICS, TOPICS, WorkerSettings
from stream.worker import partition_counts
from tests.integration.test_streaming import (DAY, HOTSPOTS, _plain_row, collect, day_closed_rows, day_records,
                                              replay_visit_rows, visit_rows, write_jsonl)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INPUT_PARTITIONS = 8
REFUSAL_LIMIT_S = 10.0


async def create_topics(bootstrap: str, counts: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, n, 1) for name, n in counts.items()])
        assert all(code == 0 for _, code, *_ in response.topic_errors), response
    finally:
        await admin.close()


async def topic_counts(bootstrap: str, prefix: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {name: n for name, n in partition_counts(await admin.describe_topics()).items()
                if name.startswith(prefix)}
    finally:
        await admin.close()


def test_worker_follows_an_input_topic_created_with_8_partitions(broker, namespace, start_worker, tmp_path):
    settings = WorkerSettings(topic_prefix=namespace["prefix"], app_id=namespace["app_id"])
    source = settings.topic("location-fixes")
    asyncio.run(create_topics(broker.bootstrap, {source: INPUT_PARTITIONS}))

    # A simulated day, then a fix a day later on each of the 8 partitions, so
    # every partition's event time passes the day's close.
    records = day_records(seed=11)
    later = max(json.loads(v)["ts"] for _, v in records)
    records += [(k, fix_json(k.decode(), later, 52.0, -1.0)) for k in clock_keys(INPUT_PARTITIONS)]
    assert {partition_of(k, INPUT_PARTITIONS) for k, _ in records} == set(range(INPUT_PARTITIONS))
    hs = load_hotspots(HOTSPOTS)
    schedule_path = tmp_path / "schedule.csv"
    draw_schedule(hs.ids, first_day=DAY, days=1, seed=11).write_csv(schedule_path)
    expected = replay(write_jsonl(records, tmp_path / "day.jsonl"), hs, schedule_path)
    want_visits = replay_visit_rows(expected)
    want_days = sorted(_plain_row(r) for r in expected.hotspot_days.rows())
    assert len(want_visits) > 50 and len(want_days) == 57

    worker = start_worker(HOTSPOTS, "--schedule", str(schedule_path))  # no --partitions
    # Ready before anything reads the outputs: the reader's metadata requests would
    # auto-create the output topics on the embedded broker, with its default count.
    worker.wait_ready()
    asyncio.run(produce(broker.bootstrap, source, records))
    out = asyncio.run(collect(broker.bootstrap, namespace["prefix"],
                              lambda o: (len(visit_rows(o["dwell-intervals"])) >= len(want_visits)
                                         and len(day_closed_rows(o)) >= len(want_days))))
    assert worker.proc.poll() is None, worker.log()

    assert visit_rows(out["dwell-intervals"]) == want_visits
    # Stage 2 waited for all 8 input partitions' day marks and owned hot spots on 8 partitions.
    assert day_closed_rows(out) == want_days
    counts = asyncio.run(topic_counts(broker.bootstrap, namespace["prefix"]))
    assert counts == {settings.topic(t): INPUT_PARTITIONS for t in TOPICS}
    assert worker.stop() == 0


def test_worker_refuses_an_internal_topic_with_another_count(broker, namespace, tmp_path):
    settings = WorkerSettings(topic_prefix=namespace["prefix"], app_id=namespace["app_id"])
    source, batches = settings.topic("location-fixes"), settings.topic("visit-batches")
    asyncio.run(create_topics(broker.bootstrap, {source: INPUT_PARTITIONS, batches: 4}))

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "worker", "--brokers", broker.bootstrap, "--hotspots", str(HOTSPOTS),
         "--topic-prefix", namespace["prefix"], "--app-id", namespace["app_id"],
         "--state-dir", str(tmp_path / "state"), "--no-time-check"],
        cwd=REPO, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started

    message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode != 0, proc.stderr
    assert took < REFUSAL_LIMIT_S, f"took {took:.1f} s; {proc.stderr}"
    assert message.startswith("hotspot-dwell: error: "), proc.stderr
    assert f"{source} has {INPUT_PARTITIONS} partitions" in message and f"{batches} has 4" in message, message
    assert all(settings.topic(t) in message for t in INTERNAL_TOPICS) and "--app-id" in message, message
    # Refused before creating anything (and so before joining a group).
    counts = asyncio.run(topic_counts(broker.bootstrap, namespace["prefix"]))
    assert counts == {source: INPUT_PARTITIONS, batches: 4}
