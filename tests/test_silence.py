"""Silence is not presence at every moment: stage 1 closes a silent officer's visits as soon as the
partition's event time has passed his last fix by ``max_gap_s``, with the replay's bounds.

Event time here is the newest fix of the partition less the reorder window; a quiet partition's event
time is moved on by the wall clock (tests/test_idle_advance.py).
"""

import asyncio
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.projection import MetricProjection
from stream.batches import build_batch
from stream.dwell_runtime import DwellRuntime
from stream.engine import RuleSettings, Visits
from stream.events import event_type
from stream.replay import replay
from stream.settings import WorkerSettings
from stream.stage1 import OfficerTracker
from tests.test_replay import CENTRE, test_hotspots

T0 = 1_711_900_000_000  # 2024-03-31 15:46:40 UTC, afternoon of a policing day
PROJ = MetricProjection("EPSG:27700")
INSIDE_A = (CENTRE[0] - 30.0, CENTRE[1])  # in hot spot A only
FAR = (CENTRE[0] + 2_000.0, CENTRE[1] + 2_000.0)  # in no hot spot
NEAR = (CENTRE[0], CENTRE[1] + 200.0)  # in no hot spot, a short walk from A


def fix_value(officer: str, ts_ms: int, xy) -> bytes:
    lon, lat = PROJ.to_wgs84(np.array([xy[0]]), np.array([xy[1]]))
    return json.dumps({"officer_id": officer, "ts": int(ts_ms), "lat": round(float(lat[0]), 7),
                       "lon": round(float(lon[0]), 7)}).encode()


def batch_of(values, first_offset):
    batch, bad, _ = build_batch(0, list(range(first_offset, first_offset + len(values))), values, time_min_ms=0,
                                time_max_ms=2**62)
    assert len(bad) == 0
    return batch


class Recorder:
    """DwellRuntime's outputs, by event type."""

    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []  # (topic, type, body)
        self.dead: list = []

    def add(self, topic, partition, key, value, headers):
        if "visit-batches" in topic:
            return
        self.events.append((topic, event_type(headers), json.loads(value)))

    async def send(self, topic, key, value, partition, headers):
        self.dead.append((value, dict(headers)))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def of_type(self, kind):
        return [body for _, t, body in self.events if t == kind]


def a_runtime(rules: RuleSettings, **settings):
    rec = Recorder()
    runtime = DwellRuntime(WorkerSettings(rules=rules, max_future_s=None, max_age_s=None, **settings),
                           test_hotspots(), rec.send, rec.add)
    return runtime, rec


def present(tracker: OfficerTracker) -> set[str]:
    return {tracker.registry.id_of(int(o)) for o in tracker.open_visits().officer}


def test_dwell_ends_when_the_officer_goes_silent_inside_while_others_report():
    """One officer patrols hot spot A for 20 minutes and his radio stops there; another keeps reporting
    elsewhere. The visit closes (visit.closed and patrol.completed) in the first batch whose event time
    passes his last fix by max_gap_s, and he stops counting as present then, not at the day's close."""
    rules = RuleSettings(max_gap_s=120, exit_margin_m=0, exit_grace_s=0, visit_bounds="fixes")
    runtime, rec = a_runtime(rules)
    tracker = runtime.new_tracker(0)
    last_inside = T0 + 40 * 30_000
    values = [fix_value("pc-silent", T0 + k * 30_000, INSIDE_A) for k in range(41)]
    busy = [T0 + k * 30_000 + 5_000 for k in range(80)]  # reports every 30 s, long after
    values += [fix_value("pc-busy", t, FAR) for t in busy]
    values.sort(key=lambda v: json.loads(v)["ts"])
    offset = 0
    closed_at = None
    reorder_ms, gap_ms = 60_000, 120_000
    present_from = None
    for v in values:
        asyncio.run(runtime.handle(tracker, batch_of([v], offset)))
        offset += 1
        newest = json.loads(v)["ts"]
        if rec.of_type("visit.closed") and closed_at is None:
            closed_at = newest
        if present_from is None and "pc-silent" in present(tracker):
            present_from = newest
        # Present from his first fix's release (a reorder window on) until the close, and not after.
        assert ("pc-silent" in present(tracker)) == (present_from is not None and closed_at is None)
    assert present_from == T0 + 2 * 30_000
    # Closed exactly when the watermark (newest less the reorder window) passed his last fix by the gap.
    assert closed_at == min(t for t in busy if t - reorder_ms - last_inside > gap_ms)
    [visit] = rec.of_type("visit.closed")
    [patrol] = rec.of_type("patrol.completed")
    assert visit["officer_id"] == "pc-silent" and visit["duration_s"] == 1200.0 and visit["fixes"] == 41
    assert patrol["start"] == visit["start"] and patrol["end"] == visit["end"]
    assert runtime.stats.silence_closed == 1


def test_buffered_fixes_of_a_silent_officer_are_released_before_his_visit_closes():
    """The officer's last fixes are still in the reorder buffer when he falls silent: they count, as at
    the end of a replay (his visit ends at the last of them, with midpoint bounds towards a fix outside)."""
    rules = RuleSettings(max_gap_s=180, reorder_window_s=60, visit_bounds="midpoint")
    tracker = OfficerTracker(test_hotspots(), rules, 0)
    mine = [(T0 + k * 20_000, INSIDE_A) for k in range(10)] + [(T0 + 10 * 20_000, NEAR)]
    theirs = [(T0 + k * 20_000 + 1, FAR) for k in range(40)]
    values = sorted([fix_value("a", t, xy) for t, xy in mine] + [fix_value("b", t, xy) for t, xy in theirs],
                    key=lambda v: json.loads(v)["ts"])
    closed = []
    for k, v in enumerate(values):
        closed.append(tracker.step(batch_of([v], k)).visits)
        closed.append(tracker.close_silent().visits)
    got = Visits.concat(closed)
    assert got.start_ms.size == 1
    # Ends halfway from the last inside fix to the fix outside after it, 20 s later.
    assert int(got.end_ms[0]) == T0 + 9 * 20_000 + 10_000 and int(got.n_fixes[0]) == 10


def test_nobody_is_looked_at_before_anyone_can_be_silent(monkeypatch):
    """close_silent is cheap: while the event time cannot have passed anyone's newest fix by the gap, the
    engine is not asked."""
    rules = RuleSettings()
    tracker = OfficerTracker(test_hotspots(), rules, 0)
    tracker.step(batch_of([fix_value("a", T0, INSIDE_A), fix_value("b", T0 + 1000, FAR)], 0))
    tracker.close_silent()  # the first call looks and learns the floor
    calls = []
    real = tracker.engine.close_silent
    monkeypatch.setattr(tracker.engine, "close_silent", lambda before: calls.append(before) or real(before))
    for k in range(1, 8):  # 7 x 30 s: event time 210 s on, less 60 s reorder: not past 180 s yet
        tracker.step(batch_of([fix_value("b", T0 + 1000 + k * 30_000, FAR)], k))
        assert tracker.close_silent().visits.start_ms.size == 0
    assert calls == []
    tracker.step(batch_of([fix_value("b", T0 + 1000 + 9 * 30_000, FAR)], 9))
    assert tracker.close_silent().visits.start_ms.size == 1 and len(calls) == 1


# -- stream == replay, fix by fix -----------------------------------------------------------


@st.composite
def shifts(draw):
    """Officers walking in and out of the hot spots, reporting every 5-90 s, some with long silences,
    each stopping at a time of its own; fixes arrive late by up to the reorder window (never later:
    the rule's premise) and are cut into batches of any size."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    n_officers = draw(st.integers(1, 5))
    fixes = []
    for k in range(n_officers):
        n = int(rng.integers(5, 120))
        dts = rng.choice([5, 15, 30, 60, 90, 200, 900], size=n, p=[.15, .25, .3, .15, .08, .05, .02])
        ts = T0 + int(rng.integers(0, 600_000)) + np.cumsum(dts * 1000)
        walk = np.cumsum(rng.normal(0, 25, (n, 2)), axis=0) + rng.normal(0, 100, 2)
        pos = np.array(CENTRE) + walk * 0.5
        for t, (x, y) in zip(ts.tolist(), pos.tolist()):
            fixes.append((t + int(rng.integers(0, 60_001)) if rng.random() < 0.2 else t, f"o{k}", t, (x, y)))
    fixes.sort()
    cuts = draw(st.lists(st.integers(1, 60), min_size=1, max_size=6))
    return [(o, t, xy) for _, o, t, xy in fixes], cuts


@settings(max_examples=25, deadline=None)
@given(case=shifts(), bounds=st.sampled_from(["midpoint", "fixes"]), gap=st.sampled_from([60, 120, 180]),
       scaling=st.sampled_from(["adaptive", "fixed"]))
def test_closing_silent_officers_after_every_batch_gives_the_replay(tmp_path_factory, case, bounds, gap, scaling):
    fixes, cuts = case
    rules = RuleSettings(max_gap_s=gap, visit_bounds=bounds, reorder_window_s=60, scaling=scaling)
    hs = test_hotspots()
    tracker = OfficerTracker(hs, rules, 0)
    closed = []
    pos = k = 0
    values = [fix_value(o, t, xy) for o, t, xy in fixes]
    while pos < len(values):
        size = cuts[k % len(cuts)]
        k += 1
        closed.append(tracker.step(batch_of(values[pos:pos + size], pos)).visits)
        closed.append(tracker.close_silent().visits)
        # Nobody left open has been silent for his gap limit.
        seen = tracker.engine._ordering.max_seen_ts_ms
        open_ = tracker.open_visits()
        assert np.all(seen[open_.officer] >= tracker.watermark_ms - open_.gap_limit_ms)
        pos += size
    closed.append(tracker.engine.finish().visits)
    got = sorted((tracker.registry.id_of(int(o)), hs.ids[int(h)], int(s), int(e), int(n), int(i), int(g))
                 for o, h, s, e, n, i, g in zip(*Visits.concat(closed)))

    path = tmp_path_factory.mktemp("silence") / "fixes.jsonl"
    path.write_bytes(b"\n".join(values) + b"\n")
    result = replay(path, hs, rules=rules)
    v = result.raw_visits
    want = sorted(zip(result.visits["officer_id"].tolist(), result.visits["hotspot_id"].tolist(),
                      v.start_ms.tolist(), v.end_ms.tolist(), v.n_fixes.tolist(), v.interval_ms.tolist(),
                      v.gap_limit_ms.tolist()))
    assert got == want  # bounds, and the interval and gap limit each visit closed under


def test_a_fix_that_comes_after_its_officer_was_found_silent():
    """Beyond the rule's premise: a fix arriving more than the reorder window behind the partition's
    newest fix, for an officer already found silent. Older than his last fix it is late (dead-lettered);
    newer, it starts a new visit: the control room was told he had gone, and that stands."""
    # Fix by fix (stay points off), so that the new visit is announced at once rather than when a stay ends.
    rules = RuleSettings(max_gap_s=120, reorder_window_s=60, exit_grace_s=0, exit_margin_m=0,
                         visit_bounds="fixes", stay_min_fixes=0)
    tracker = OfficerTracker(test_hotspots(), rules, 0)
    values = [fix_value("a", T0 + k * 30_000, INSIDE_A) for k in range(5)]
    values += [fix_value("b", T0 + k * 30_000, FAR) for k in range(20)]
    values.sort(key=lambda v: json.loads(v)["ts"])
    tracker.step(batch_of(values, 0))
    assert tracker.close_silent().visits.start_ms.size == 1
    late = tracker.step(batch_of([fix_value("a", T0 + 3 * 30_000 + 1, INSIDE_A)], 100))
    assert late.rejects.reason.tolist() == [10]  # late
    back = T0 + 4 * 30_000 + 60_000
    resumed = tracker.step(batch_of([fix_value("a", back, INSIDE_A), fix_value("a", back + 70_000, INSIDE_A)],
                                    101))
    assert resumed.opened.start_ms.tolist() == [back]


def test_the_watermark_survives_a_checkpoint_and_older_snapshots_still_restore():
    rules = RuleSettings()
    tracker = OfficerTracker(test_hotspots(), rules, 3)
    tracker.step(batch_of([fix_value("a", T0, INSIDE_A)], 0))
    assert (tracker.clock_ms, tracker.watermark_ms) == (T0, T0 - 60_000)
    assert tracker.advance_event_time(T0 + 500_000, T0 + 500_000) and not tracker.advance_event_time(T0, T0)
    again = OfficerTracker.restore(tracker.snapshot(), test_hotspots(), rules)
    assert (again.clock_ms, again.watermark_ms) == (T0 + 500_000, T0 + 500_000)
    arrays = tracker.snapshot_arrays()
    arrays["version"] = np.array([2])
    arrays["event_ms"] = arrays["event_ms"][:4]
    from stream.stage1 import encode_arrays

    old = OfficerTracker.restore(encode_arrays(arrays), test_hotspots(), rules)
    assert (old.clock_ms, old.watermark_ms) == (T0, T0 - 60_000)
