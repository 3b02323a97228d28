"""A partition that receives nothing still moves on: after ``idle_advance_s`` of wall clock its event
time follows the wall clock, so silent officers' visits and policing days close on it too."""

import asyncio
import datetime as dt

from stream.engine import RuleSettings
from stream.policing_day import PolicingCalendar
from stream.stage2 import IDLE_THROUGH, fold_mark
from tests.test_silence import INSIDE_A, T0, a_runtime, batch_of, fix_value, present

RULES = RuleSettings(max_gap_s=120, reorder_window_s=60, exit_margin_m=0, exit_grace_s=0, visit_bounds="fixes")


def _items(runtime, partition):
    return [item for items in runtime._outboxes.get(partition, {}).values() for item in items]


def _fed(runtime, tracker, last_ts):
    values = [fix_value("pc-1", t, INSIDE_A) for t in range(T0, last_ts + 1, 30_000)]
    asyncio.run(runtime.handle(tracker, batch_of(values, 0)))
    since, base = runtime._quiet[tracker.partition]
    assert base == last_ts
    return since


def test_historical_quiet_partition_closes_the_silent_officer_from_the_wall_clock_alone():
    """Time checks off (history played fast): once quiet for idle_advance_s, event time moves on from the
    newest fix at the wall clock's pace, and the last officer's visit closes max_gap_s after that."""
    runtime, rec = a_runtime(RULES, idle_advance_s=30.0)
    tracker = runtime.new_tracker(0)
    last = T0 + 20 * 30_000
    since = _fed(runtime, tracker, last)
    assert present(tracker) == {"pc-1"}
    asyncio.run(runtime.advance_idle(tracker, since + 29.9, 0.0))
    assert tracker.watermark_ms == last - 60_000  # not quiet long enough: the newest fix less the window
    asyncio.run(runtime.advance_idle(tracker, since + 30.0 + 119.0, 0.0))
    assert tracker.watermark_ms == tracker.clock_ms == last + 119_000 and present(tracker) == {"pc-1"}
    asyncio.run(runtime.advance_idle(tracker, since + 30.0 + 120.5, 0.0))
    assert present(tracker) == set()
    [visit] = rec.of_type("visit.closed")
    assert visit["duration_s"] == 600.0 and runtime.stats.idle_advances == 2
    assert rec.of_type("patrol.completed") == []  # 10 minutes: a visit, not a patrol


def test_live_quiet_partition_follows_the_wall_clock_less_the_reorder_window():
    runtime, rec = a_runtime(RULES, idle_advance_s=30.0)
    runtime.settings = runtime.settings.with_overrides(max_future_s=300.0, max_age_s=86_400.0)
    tracker = runtime.new_tracker(0)
    last = T0 + 20 * 30_000
    since = _fed(runtime, tracker, last)
    wall_s = (last + 185_000) / 1000
    asyncio.run(runtime.advance_idle(tracker, since + 30.0, wall_s))
    assert (tracker.clock_ms, tracker.watermark_ms) == (last + 185_000, last + 125_000)
    assert present(tracker) == set() and len(rec.of_type("visit.closed")) == 1


def test_a_partition_with_a_backlog_is_not_idle():
    runtime, rec = a_runtime(RULES, idle_advance_s=30.0)
    tracker = runtime.new_tracker(0)
    since = _fed(runtime, tracker, T0 + 20 * 30_000)
    asyncio.run(runtime.advance_idle(tracker, since + 3600.0, 0.0, caught_up=False))
    assert present(tracker) == {"pc-1"} and runtime.stats.idle_advances == 0


def test_the_policing_day_of_a_quiet_partition_closes_from_the_wall_clock():
    cal = PolicingCalendar(RULES.timezone, RULES.day_start)
    day = cal.day_of_ms(T0)
    day_end = cal.day_start_ms(day + dt.timedelta(days=1))
    runtime, rec = a_runtime(RULES, idle_advance_s=30.0, day_close_grace_s=60.0, partitions=2)
    tracker = runtime.new_tracker(0)
    last = T0 + 20 * 30_000
    since = _fed(runtime, tracker, last)
    asyncio.run(runtime.close_day_if_due(tracker))
    marks = [item for item in _items(runtime, 0) if item[0] == "m"]
    assert marks == [["m", (day - dt.timedelta(days=1)).isoformat(), False]] * 2  # one per stage-2 partition
    # Event time moves on from the newest fix once the partition has been quiet for idle_advance_s.
    quiet = 30.0 + (day_end + 60_000 - last) / 1000
    asyncio.run(runtime.advance_idle(tracker, since + quiet - 1, 0.0))
    assert [item for item in _items(runtime, 0) if item[0] == "m"] == marks
    asyncio.run(runtime.advance_idle(tracker, since + quiet, 0.0))
    marks = [item for item in _items(runtime, 0) if item[0] == "m"]
    assert marks[-1] == ["m", day.isoformat(), True]


def test_a_historical_partition_that_never_had_a_fix_holds_no_day_open():
    runtime, rec = a_runtime(RULES, idle_advance_s=30.0, partitions=3)
    tracker = runtime.new_tracker(1)
    since, base = runtime._quiet[1]
    assert base is None
    asyncio.run(runtime.advance_idle(tracker, since + 29.0, 0.0))
    assert _items(runtime, 1) == []
    for _ in range(3):  # said once
        asyncio.run(runtime.advance_idle(tracker, since + 31.0, 0.0))
    assert _items(runtime, 1) == [["i"]] * 3 and tracker.watermark_ms is None


def test_a_live_partition_that_never_had_a_fix_closes_days_by_the_wall_clock():
    runtime, rec = a_runtime(RULES, idle_advance_s=30.0, day_close_grace_s=60.0, partitions=1)
    runtime.settings = runtime.settings.with_overrides(max_future_s=300.0, max_age_s=86_400.0)
    tracker = runtime.new_tracker(0)
    since, _ = runtime._quiet[0]
    cal = PolicingCalendar(RULES.timezone, RULES.day_start)
    day = cal.day_of_ms(T0)
    asyncio.run(runtime.advance_idle(tracker, since + 30.0, T0 / 1000))
    assert _items(runtime, 0) == [["m", (day - dt.timedelta(days=1)).isoformat(), False]]
    next_day_end = cal.day_start_ms(day + dt.timedelta(days=1))
    asyncio.run(runtime.advance_idle(tracker, since + 31.0, (next_day_end + 60_000) / 1000))
    assert _items(runtime, 0)[-1] == ["m", day.isoformat(), False]


def test_an_idle_source_holds_no_day_until_it_marks_one():
    d = dt.date(2024, 3, 30)
    doc: dict = {}
    assert fold_mark(doc, 0, d, True, 2) == []
    assert fold_mark(doc, 1, None, False, 2) == [d]  # source 1 never had a fix
    assert doc["through"]["1"] == IDLE_THROUGH
    # Its first fixes come later: its first mark takes over, and days closed stay closed.
    doc["closed"] = [d.isoformat()]
    assert fold_mark(doc, 1, d, False, 2) == []
    assert doc["through"]["1"] == d.isoformat()
    assert fold_mark(doc, 1, None, False, 2) == [] and doc["through"]["1"] == d.isoformat()
    assert fold_mark(doc, 0, d + dt.timedelta(days=1), False, 2) == []  # source 1 holds the next day now


def test_fixes_coming_in_again_stop_the_advance_whatever_their_times():
    """Regression: quiet was measured from the last move of the newest fix, so fixes older than an
    advanced clock (history resumed after a pause) left the partition "quiet" and its event time ran on
    with the wall clock under the data."""
    runtime, rec = a_runtime(RULES, idle_advance_s=30.0)
    tracker = runtime.new_tracker(0)
    last = T0 + 20 * 30_000
    since = _fed(runtime, tracker, last)
    asyncio.run(runtime.advance_idle(tracker, since + 40.0, 0.0))
    assert tracker.clock_ms == last + 10_000
    asyncio.run(runtime.handle(tracker, batch_of([fix_value("pc-2", last + 5_000, INSIDE_A)], 100)))
    resumed, base = runtime._quiet[0]
    assert base == last + 10_000 and resumed > since
    asyncio.run(runtime.advance_idle(tracker, resumed + 29.0, 0.0))
    assert tracker.clock_ms == last + 10_000  # not quiet long enough since the fix
    asyncio.run(runtime.advance_idle(tracker, resumed + 35.0, 0.0))
    assert tracker.clock_ms == last + 15_000
