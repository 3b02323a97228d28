"""Stage 1 without a broker: fix batches through OfficerTracker give the replay's visits,
however the stream is cut, with a checkpoint restore and a re-sent batch in the middle."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.batches import build_batch
from stream.engine import RuleSettings, Visits
from stream.replay import replay
from stream.stage1 import OfficerTracker
from tests.test_replay import STARTS, test_hotspots, write_trouble_csv


def _json_values(path):
    """The CSV rows as the JSON values a radio gateway would send."""
    values = []
    for line in open(path).read().splitlines()[1:]:
        f = line.split(",")
        if len(f) != 4:
            values.append(line.encode())  # malformed either way
            continue
        record = {"officer_id": f[0], "ts": int(f[1]) if f[1].isdigit() else f[1], "lat": f[2], "lon": f[3]}
        values.append(json.dumps(record).encode())
    return values


def _visit_rows(visits: Visits, tracker: OfficerTracker, hotspots):
    return sorted((tracker.registry.id_of(int(o)), hotspots.ids[int(h)], int(s), int(e), int(n))
                  for o, h, s, e, n in zip(*visits[:5]))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), start=st.sampled_from(STARTS), cuts=st.lists(st.integers(1, 400), min_size=1,
                                                                                 max_size=8))
def test_batches_through_the_tracker_equal_the_replay(tmp_path_factory, seed, start, cuts):
    path = tmp_path_factory.mktemp("s1") / "fixes.csv"
    write_trouble_csv(path, seed, start, 3, 250, 90.0)
    hs = test_hotspots()
    rules = RuleSettings()
    values = _json_values(path)
    offsets = list(range(1000, 1000 + len(values)))
    tracker = OfficerTracker(hs, rules, partition=0)
    closed = []
    rejected = {}
    pos = 0
    k = 0
    while pos < len(values):
        size = cuts[k % len(cuts)]
        k += 1
        batch, _, _ = build_batch(0, offsets[pos:pos + size], values[pos:pos + size], time_min_ms=0,
                                  time_max_ms=2**62)
        # Committed visits (a held stay's visit is announced once it is released, see DwellEngine.opened_visits).
        before = {(int(o), int(h), int(t)) for o, h, t in zip(*(a.copy() for a in tracker.engine.open_visits(live=False)[:3]))}
        out = tracker.step(batch)
        now = tracker.engine.open_visits(live=False)
        opened = out.opened if out.opened is not None else Visits.empty()
        # The visits reported opened are exactly the open ones that were not open before.
        assert sorted(zip(opened.officer.tolist(), opened.hotspot.tolist(), opened.start_ms.tolist())) \
            == sorted(k for k in zip(now.officer.tolist(), now.hotspot.tolist(), now.start_ms.tolist())
                      if k not in before)
        closed.append(out.visits)
        rejected.update(zip(out.rejects.row.tolist(), out.rejects.reason.tolist()))
        if k == 2:
            # A checkpoint and a restart, then the same chunk again (read
            # twice around a rebalance): nothing is applied twice.
            tracker = OfficerTracker.restore(tracker.snapshot(), hs, rules)
            again = tracker.step(batch)
            assert again.skipped == len(batch) and len(again.visits.start_ms) == 0
        pos += size
    last = tracker.engine.finish()
    closed.append(last.visits)
    rejected.update(zip(last.rejects.row.tolist(), last.rejects.reason.tolist()))
    got = _visit_rows(Visits.concat(closed), tracker, hs)

    result = replay(path, hs, rules=rules)
    v = result.raw_visits
    want = sorted(zip(result.visits["officer_id"].tolist(), result.visits["hotspot_id"].tolist(),
                      v.start_ms.tolist(), v.end_ms.tolist(), v.n_fixes.tolist()))
    assert got == want
    # Ordering rejects (duplicate, late, speed) at the same records.
    names = {9: "duplicate", 10: "late", 11: "impossible_speed"}
    ordering_rejects = {off - 1000 + 2: names[r] for off, r in rejected.items()}
    replay_ordering = {line: reason for line, reason in zip(result.rejected["line"].tolist(),
                                                             result.rejected["reason"].tolist())
                       if reason in names.values()}
    assert ordering_rejects == replay_ordering


def _tracker_with_state(tmp_path):
    hs = test_hotspots()
    path = tmp_path / "fixes.csv"
    write_trouble_csv(path, 3, STARTS[2], 3, 200, 90.0)
    values = _json_values(path)
    tracker = OfficerTracker(hs, RuleSettings(), 0)
    batch, _, _ = build_batch(0, list(range(len(values))), values, time_min_ms=0, time_max_ms=2**62)
    tracker.step(batch)
    return tracker


def test_a_checkpoint_cut_short_leaves_the_previous_one_restorable(tmp_path):
    import asyncio

    from stream.checkpoint_log import CheckpointStore, MemoryCheckpointLog, piece_key

    tracker = _tracker_with_state(tmp_path)
    log = MemoryCheckpointLog()
    store = CheckpointStore(log, piece_bytes=1000)  # many pieces
    complete = tracker.snapshot()
    asyncio.run(store.write(0, complete, tracker.last_offset))
    first_gen = store._generation[0]
    tracker.last_offset += 1000  # state moves on ...
    newer = tracker.snapshot()
    # ... and a crash lands only the first pieces of the next checkpoint,
    # plus noise from another writer's keys.
    for i in range(2):
        asyncio.run(log.append(0, piece_key(0, 1 - first_gen, i), newer[i * 1000:(i + 1) * 1000]))
    got = asyncio.run(CheckpointStore(log).load(0))
    assert got.data == complete and got.input_offset == tracker.last_offset - 1000
    assert asyncio.run(CheckpointStore(log).load(1)) is None  # a partition never checkpointed


def test_restore_finds_the_last_manifest_far_back_and_after_compaction(tmp_path):
    import asyncio

    from stream.checkpoint_log import CheckpointStore, MemoryCheckpointLog

    tracker = _tracker_with_state(tmp_path)
    log = MemoryCheckpointLog()
    store = CheckpointStore(log, piece_bytes=500)  # more pieces than the first look back covers
    data = tracker.snapshot()
    for k in range(3):
        asyncio.run(store.write(0, data + bytes([k]), 100 + k))
    # Compaction: only the latest record of each key survives.
    latest = {}
    for rec in log.records[0]:
        latest[rec.key] = rec
    log.records[0] = sorted(latest.values(), key=lambda r: r.offset)
    got = asyncio.run(CheckpointStore(log).load(0))
    assert got.data == data + bytes([2]) and got.input_offset == 102


def test_a_corrupt_checkpoint_is_a_clear_error_not_a_wrong_state(tmp_path):
    import asyncio
    import dataclasses

    import pytest

    from stream.checkpoint_log import CheckpointError, CheckpointStore, MemoryCheckpointLog

    tracker = _tracker_with_state(tmp_path)
    log = MemoryCheckpointLog()
    asyncio.run(CheckpointStore(log).write(0, tracker.snapshot(), tracker.last_offset))
    first = log.records[0][0]
    log.records[0][0] = dataclasses.replace(first, value=b"x" + first.value[1:])
    with pytest.raises(CheckpointError, match="does not match its manifest"):
        asyncio.run(CheckpointStore(log).load(0))


def test_partitions_take_turns_to_be_checkpointed():
    from stream.settings import WorkerSettings
    from stream.stage1_consumer import Stage1Consumer

    consumer = Stage1Consumer(WorkerSettings(checkpoint_interval_s=2.0), test_hotspots())
    trackers = {p: OfficerTracker(consumer.runtime.hotspots, consumer.runtime.rules, p) for p in range(4)}
    consumer.runtime.trackers = trackers
    consumer._last_checkpoint = 0.0
    taken = []
    for tick in range(100):  # 10 s in steps of 0.1 s; partitions 0-2 keep receiving fixes, 3 none after 0
        now = tick / 10
        for p in (0, 1, 2):
            trackers[p].version += 1
        if tick == 0:
            trackers[3].version += 1
        p = consumer.due_for_checkpoint(now)
        if p is not None:  # what _start_checkpoint records
            taken.append((now, p))
            consumer._last_checkpoint = consumer._checkpointed_at[p] = now
            consumer._checkpointed_version[p] = trackers[p].version
    starts = [t for t, _ in taken]
    # One partition at a time, at most every interval / 4 ...
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(starts, starts[1:]))
    for p in (0, 1, 2):
        mine = [t for t, q in taken if q == p]
        # ... each moving partition every interval (give or take a turn), and none more often.
        assert all(2.0 - 1e-9 <= b - a <= 2.6 for a, b in zip(mine, mine[1:])) and len(mine) >= 4
    assert sum(q == 3 for _, q in taken) == 1  # once: nothing came in after


def test_stage2_is_fed_at_most_every_interval_each_partition_in_its_own_messages():
    import asyncio
    import datetime as dt
    import time

    from stream.settings import WorkerSettings
    from stream.stage1_consumer import Stage1Consumer
    from stream.visit_batches import VisitBatch

    consumer = Stage1Consumer(WorkerSettings(stage2_feed_interval_s=0.05, partitions=2), test_hotspots())
    runtime = consumer.runtime
    sent = []
    runtime._add = lambda topic, q, key, value, headers: sent.append((q, key, VisitBatch.decode(value)))
    a, b = runtime.new_tracker(0), runtime.new_tracker(1)
    runtime.trackers = {0: a, 1: b}
    t0 = time.monotonic()

    def feed(now):
        for tracker in (a, b):
            asyncio.run(runtime.feed_stage2_if_due(tracker, now))
        got = list(sent)
        sent.clear()
        return got

    a.last_offset = 7
    runtime.mark_checkpoint(a)
    first = feed(t0)  # never fed before: goes at once
    assert sorted((q, key, m.src, m.items) for q, key, m in first) == [(q, b"p0", 0, [["c", 7]]) for q in (0, 1)]
    asyncio.run(runtime._mark(a, dt.date(2024, 3, 30), had_visits=True))
    a.last_offset = 9
    runtime.mark_checkpoint(a)
    asyncio.run(runtime._mark(b, dt.date(2024, 3, 29), had_visits=False))
    # Within the interval partition 0 waits; partition 1 was never fed, so its share goes.
    assert [(q, m.src, m.items) for q, _, m in feed(t0 + 0.02)] == [(0, 1, [["m", "2024-03-29", False]]),
                                                                   (1, 1, [["m", "2024-03-29", False]])]
    assert feed(t0 + 0.04) == []
    # After it, everything partition 0 held, in order, in one message per stage-2 partition.
    later = feed(t0 + 0.06)
    assert [(q, m.src, m.items) for q, _, m in later] == [(q, 0, [["m", "2024-03-30", True], ["c", 9]])
                                                          for q in (0, 1)]
    # A forced send (checkpoint, day close) goes whatever the interval; forgetting a partition drops its share.
    runtime.mark_checkpoint(b)
    asyncio.run(runtime.send_visit_batches(b))
    assert [m.src for _, _, m in sent] == [1, 1]
    sent.clear()
    runtime.mark_checkpoint(a)
    runtime.forget([0])
    assert feed(t0 + 1.0) == []
