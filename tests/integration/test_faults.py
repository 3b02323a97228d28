"""Faults against the real broker: two workers, a SIGKILL mid-stream, bad records."""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest

from stream.producer import partition_of, produce
from stream.replay import replay
from tests.integration.test_streaming import (HOTSPOTS, PARTITIONS, collect, day_records, headers, replay_visit_rows,
                                              visit_rows, write_jsonl)

pytestmark = pytest.mark.integration


def expected_of(records, tmp_path):
    result = replay(write_jsonl(records, tmp_path / "day.jsonl"), HOTSPOTS)
    return replay_visit_rows(result), sorted(result.patrols.rows())


def patrol_rows(messages):
    bodies = [json.loads(m.value) for m in messages if dict(m.headers)["ce_type"].endswith(b"patrol.completed")]
    by_id = {}
    for b in bodies:
        # Repeats are allowed only as exact copies under the same id.
        row = (b["event_id"], b["officer_id"], b["hotspot_id"], b["start"], b["end"], b["duration_s"])
        assert by_id.setdefault(b["event_id"], row) == row
    return sorted(by_id.values()), len(bodies)


def until(want_visits, want_patrols):
    def done(out):
        return (len(visit_rows(out["dwell-intervals"])) >= len(want_visits)
                and len(patrol_rows(out["patrol-events"])[0]) >= len(want_patrols))
    return done


def test_two_workers_give_the_same_output_as_one(broker, namespace, start_worker, tmp_path):
    records = day_records(seed=11)
    want_visits, want_patrols = expected_of(records, tmp_path)
    a = start_worker(HOTSPOTS, "--partitions", str(PARTITIONS), name="a")
    b = start_worker(HOTSPOTS, "--partitions", str(PARTITIONS), name="b")
    # b is ready only once both groups have rebalanced and given it partitions.
    b.wait_ready()
    asyncio.run(produce(broker.bootstrap, namespace["prefix"] + "location-fixes", records))
    out = asyncio.run(collect(broker.bootstrap, namespace["prefix"], until(want_visits, want_patrols)))
    assert visit_rows(out["dwell-intervals"]) == want_visits
    assert patrol_rows(out["patrol-events"])[0] == want_patrols
    # Both workers did stage-1 work (the partitions were shared).
    assert a.proc.poll() is None and b.proc.poll() is None
    assert a.stop() == 0 and b.stop() == 0
    fixes = [int(re.search(r"stage 1 processed \d+ batches, (\d+) fixes", w.log()).group(1)) for w in (a, b)]
    assert all(n > 0 for n in fixes), fixes  # both workers tracked officers


def test_sigkill_mid_stream_loses_no_patrol_and_repeats_only_same_ids(broker, namespace, start_worker, tmp_path):
    records = day_records(seed=13)
    want_visits, want_patrols = expected_of(records, tmp_path)
    topic = namespace["prefix"] + "location-fixes"
    half = len(records) // 2
    # Checkpoint after every batch, so the restart really restores one.
    fast = {"HOTSPOT_DWELL_CHECKPOINT_INTERVAL_S": "0"}
    first = start_worker(HOTSPOTS, "--partitions", str(PARTITIONS), name="first", env=fast)
    # Start to ready (both consumer groups assigned) on the embedded broker.
    assert first.wait_ready() < 10.0
    asyncio.run(produce(broker.bootstrap, topic, records[:half]))
    # Wait for real progress, then kill without warning.
    asyncio.run(collect(broker.bootstrap, namespace["prefix"] + "", lambda out: len(out["dwell-intervals"]) >= 20,
                        timeout_s=60))
    first.kill()
    second = start_worker(HOTSPOTS, "--partitions", str(PARTITIONS), name="second", env=fast)
    # Processing again within 30 s: the dead member has to time out first.
    assert second.wait_ready() < 30.0
    asyncio.run(produce(broker.bootstrap, topic, records[half:]))
    out = asyncio.run(collect(broker.bootstrap, namespace["prefix"], until(want_visits, want_patrols)))
    assert visit_rows(out["dwell-intervals"]) == want_visits
    patrols, n_messages = patrol_rows(out["patrol-events"])
    assert patrols == want_patrols  # none lost; repeats (if any) carry the same id and body
    assert n_messages >= len(want_patrols)
    assert second.stop() == 0
    assert "restored from checkpoint" in second.log()  # state came back, not a re-read from offset 0
    processed = int(re.search(r"stage 1 processed \d+ batches, (\d+) fixes", second.log()).group(1))
    assert processed < len(records), processed


BAD_VALUES = [
    b"{not json",
    b'{"officer_id": "x1", "ts": 1711800000000, "lat": 52.95}',
    b'{"officer_id": "x1", "ts": "yesterday", "lat": 52.95, "lon": -1.15}',
    b'{"officer_id": "x1", "ts": 1711800000000, "lat": 95.0, "lon": -1.15}',
    b'{"officer_id": "x1", "ts": 1711800000000, "lat": 0, "lon": 0}',
    b'{"officer_id": "x1", "ts": 1711800000000, "lat": "NaN", "lon": -1.15}',
    b"[1, 2, 3]",
    b"",
    b'{"officer_id": "x1", "ts": 1711800000000, "lat": 52.95, "lon": -1.15, "source": "\xc3"}',
]
BAD_REASONS = ["malformed", "missing_field", "bad_time", "coordinates_out_of_range", "null_island",
               "bad_coordinates", "malformed", "malformed", "malformed"]


def test_bad_records_all_reach_the_dead_letter_topic_and_good_output_is_unchanged(broker, namespace, start_worker,
                                                                                   tmp_path):
    good = day_records(seed=17)
    want_visits, want_patrols = expected_of(good, tmp_path)
    rng = np.random.default_rng(3)
    mixed = list(good)
    planted = []
    for value in BAD_VALUES * 3:
        at = int(rng.integers(0, len(mixed) - PARTITIONS))  # before the closing clock records
        key = f"bad-{len(planted)}".encode()
        mixed.insert(at, (key, value))
        planted.append((key, value))
    start_worker(HOTSPOTS, "--partitions", str(PARTITIONS))
    asyncio.run(produce(broker.bootstrap, namespace["prefix"] + "location-fixes", mixed))

    def done(out):
        bad_keys = {m.key for m in out["location-fixes-dead-letter"] if m.key and m.key.startswith(b"bad-")}
        return until(want_visits, want_patrols)(out) and len(bad_keys) == len(planted)

    out = asyncio.run(collect(broker.bootstrap, namespace["prefix"], done))
    assert visit_rows(out["dwell-intervals"]) == want_visits
    assert patrol_rows(out["patrol-events"])[0] == want_patrols
    dead = {m.key: m for m in out["location-fixes-dead-letter"] if m.key and m.key.startswith(b"bad-")}
    for i, (key, value) in enumerate(planted):
        m = dead[key]
        assert m.value == value
        assert headers(m)["reason"].decode() == BAD_REASONS[i % len(BAD_VALUES)], value
        assert int(headers(m)["source_partition"]) == partition_of(key, PARTITIONS)
