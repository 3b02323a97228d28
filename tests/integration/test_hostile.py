"""Over ten thousand hostile records in a good day's stream, through a worker on the real broker.

Every planted record reaches the dead-letter topic with a reason its kind
allows (found by its source partition and offset), nothing else is
dead-lettered but what a clean replay rejects too, the worker neither
crashes nor stalls, and the visits, patrols and hot spot-days equal the
replay of the good records alone. The worker keeps its default event-time
bounds (a week back, five minutes ahead), so the day is two days ago.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer

from geo.hotspots import load_hotspots
from stream.events import DEAD_LETTER_MAX_VALUE_BYTES
from stream.producer import clock_keys, fix_json
from stream.replay import replay
from tests.chaos.hostile import CATEGORY_REASONS, good_day, mix_hostile
from tests.integration.test_faults import patrol_rows
from tests.integration.test_streaming import (HOTSPOTS, PARTITIONS, _plain_row, collect, day_closed_rows, headers,
                                              replay_visit_rows, visit_rows, write_jsonl)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

N_HOSTILE = 10_500


async def produce_tracked(bootstrap: str, topic: str, records) -> list[tuple[int, int]]:
    """Send in order; the (partition, offset) each record got."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20,
                                max_request_size=4 << 20)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def read_to_end(bootstrap: str, prefix: str) -> dict[str, list]:
    """Every record the output topics hold now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    names = ("dwell-intervals", "patrol-events", "location-fixes-dead-letter")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(prefix + n, p) for n in names for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = {n: [] for n in names}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, msgs in (await consumer.getmany(timeout_ms=1000)).items():
                out[tp.topic[len(prefix):]] += msgs
        return out
    finally:
        await consumer.stop()


def test_hostile_records_all_reach_the_dead_letter_topic_and_the_good_output_is_unchanged(broker, namespace,
                                                                                          start_worker, tmp_path):
    now_ms = int(time.time() * 1000)
    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).date()
    good = good_day(load_hotspots(HOTSPOTS), day, officers=30, seed=41)
    # One record a partition a minute ago moves every partition's event time past the day's close.
    closing = [(k, fix_json(k.decode(), now_ms - 60_000, 52.0, -1.0)) for k in clock_keys(PARTITIONS)]
    expected = replay(write_jsonl(good + closing, tmp_path / "good.jsonl"), HOTSPOTS)
    lines = expected.rejected["line"].tolist()
    reasons = expected.rejected["reason"].tolist()
    # Officers whose own fixes the speed rule rejects: no rejection is planted among theirs.
    speed_rejected = {good[line - 1][0].decode() for line, r in zip(lines, reasons)
                      if r == "impossible_speed" and line <= len(good)}
    mixed, kinds = mix_hostile(good, N_HOSTILE, seed=43, now_ms=now_ms, avoid_officers=speed_rejected)
    worker = start_worker(HOTSPOTS, "--partitions", str(PARTITIONS), time_check=True)
    worker.wait_ready()
    placed = asyncio.run(produce_tracked(broker.bootstrap, namespace["prefix"] + "location-fixes", mixed + closing))
    hostile = {placed[i]: kind for i, kind in enumerate(kinds) if kind is not None}
    assert len(hostile) == N_HOSTILE
    want_visits = replay_visit_rows(expected)
    want_patrols = sorted(expected.patrols.rows())
    want_days = sorted(_plain_row(r) for r in expected.hotspot_days.rows())
    want_dead = N_HOSTILE + len(lines)  # the planted records and what the replay rejects of the good ones

    def dead_letters(out) -> dict[tuple[int, int], object]:
        return {(int(headers(m)["source_partition"]), int(headers(m)["source_offset"])): m
                for m in out["location-fixes-dead-letter"]}

    def done(out) -> bool:
        return (len(visit_rows(out["dwell-intervals"])) >= len(want_visits)
                and len(day_closed_rows(out)) >= len(want_days) and len(dead_letters(out)) >= want_dead)

    try:
        out = asyncio.run(collect(broker.bootstrap, namespace["prefix"], done, timeout_s=240))
    except AssertionError:  # incomplete: what did arrive says what is missing
        out = asyncio.run(read_to_end(broker.bootstrap, namespace["prefix"]))
    # No agent crashed or stalled: the worker is still up and took everything in.
    assert worker.proc.poll() is None, worker.log()[-3000:]
    dead = dead_letters(out)
    wrong = {kind: (headers(dead[at])["reason"].decode() if at in dead else "missing")
             for at, kind in hostile.items()
             if at not in dead or headers(dead[at])["reason"].decode() not in CATEGORY_REASONS[kind]}
    assert not wrong, list(wrong.items())[:10]
    assert len(dead) == want_dead  # nothing good was dead-lettered
    # Each exactly once: a worker that has not failed reads every record once (regression: a fresh worker's
    # first fetch and the seek on assignment overlapped, and the records read twice were dead-lettered twice).
    twice = [at for at, n in Counter((int(headers(m)["source_partition"]), int(headers(m)["source_offset"]))
                                     for m in out["location-fixes-dead-letter"]).items() if n > 1]
    assert twice == [], f"{len(twice)} records dead-lettered more than once, e.g. {twice[:5]}"
    by_reason = Counter(headers(m)["reason"].decode() for at, m in dead.items() if at not in hostile)
    assert by_reason == Counter(reasons)
    # The good output is the clean run's.
    assert visit_rows(out["dwell-intervals"]) == want_visits
    assert patrol_rows(out["patrol-events"])[0] == want_patrols
    assert day_closed_rows(out) == want_days
    # Dead letters carry the record as it came, cut where it would not fit a broker's limit.
    by_place = dict(zip(placed, mixed + closing))
    cut = [m for at, m in dead.items() if "value_truncated_from" in headers(m)]
    assert cut and all(m.value == by_place[at][1][:DEAD_LETTER_MAX_VALUE_BYTES]
                       and int(headers(m)["value_truncated_from"]) == len(by_place[at][1])
                       for at, m in dead.items() if "value_truncated_from" in headers(m))
    whole = [at for at, m in dead.items() if at in hostile and hostile[at] not in ("teleport", "swapped_lat_lon")
             and "value_truncated_from" not in headers(m)]
    assert all(dead[at].value == by_place[at][1] for at in whole)
    assert worker.stop() == 0
    assert "Traceback" not in worker.log()


def test_a_worker_started_on_a_full_topic_dead_letters_each_record_once(broker, namespace, start_worker, tmp_path):
    """Regression: a fresh worker's first fetch and the seek on its assignment overlapped, so the records
    it read twice were dead-lettered twice (66 of 2,040 in a hostile day), though nothing had failed."""
    now_ms = int(time.time() * 1000)
    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).date()
    good = good_day(load_hotspots(HOTSPOTS), day, officers=6, seed=5)
    mixed, kinds = mix_hostile(good, 2_040, seed=6, now_ms=now_ms)
    placed = asyncio.run(produce_tracked(broker.bootstrap, namespace["prefix"] + "location-fixes", mixed))
    hostile = {placed[i] for i, kind in enumerate(kinds) if kind is not None}
    start_worker(HOTSPOTS, "--partitions", str(PARTITIONS), time_check=True)  # the records wait for it

    def places(out):
        return Counter((int(headers(m)["source_partition"]), int(headers(m)["source_offset"]))
                       for m in out["location-fixes-dead-letter"])

    out = asyncio.run(collect(broker.bootstrap, namespace["prefix"], lambda o: hostile <= set(places(o)),
                              timeout_s=120))
    twice = {at: n for at, n in places(out).items() if n > 1}
    assert twice == {}, f"{len(twice)} records dead-lettered more than once"
