"""Adaptive rules: the gap limit and exit grace follow each officer's reporting interval, the exit margin
each fix's stated accuracy; ``--rules fixed`` keeps the fixed values. Scenarios through the engine core."""

import numpy as np

from stream.engine import DwellEngine, OfficerLimits, RuleSettings
from stream.fixes import FixColumns
from tests.test_replay import CENTRE, test_hotspots
from tests.test_silence import PROJ, T0

INSIDE = (CENTRE[0] - 30.0, CENTRE[1])  # in hot spot A (a 150 m square about CENTRE) only
JUST_OUTSIDE_A = (CENTRE[0] - 75.0 - 18.0, CENTRE[1])  # 18 m west of A, in no other hot spot


def run(rules: RuleSettings, fixes, accuracy=None):
    """(ts_ms, (x, y)) fixes of one officer through a fresh engine; the visits, closed at the end."""
    ts = np.array([t for t, _ in fixes], np.int64)
    xy = np.array([p for _, p in fixes], np.float64)
    lon, lat = PROJ.to_wgs84(xy[:, 0], xy[:, 1])
    acc = np.full(len(fixes), np.nan) if accuracy is None else np.asarray(accuracy, np.float64)
    engine = DwellEngine(test_hotspots(), rules)
    out = engine.step(FixColumns(np.arange(len(fixes)), np.zeros(len(fixes), np.int64), ts, lat, lon, acc))
    last = engine.finish()
    return [v for v in zip(*(np.concatenate([a, b]).tolist() for a, b in zip(out.visits, last.visits)))]


def radio(interval_s, n, dropped=(), where=INSIDE, start=T0):
    return [(start + k * interval_s * 1000, where) for k in range(n) if k not in dropped]


def test_a_slow_radio_s_dropped_reports_do_not_split_its_patrol():
    # A radio every 70 s, two reports lost in a row: a 210 s silence in the middle of a 25-minute stay.
    fixes = radio(70, 22, dropped=(10, 11))
    fixed = run(RuleSettings(scaling="fixed"), fixes)
    adaptive = run(RuleSettings(), fixes)
    assert len(fixed) == 2  # 210 s > max_gap_s 180: silence is not presence, at a fixed limit
    [visit] = adaptive
    assert visit[4] == 20  # every inside fix in one visit
    # It closed (at the end) under the officer's own limit: 4 x 70 s, from the interval estimate.
    assert (visit[5], visit[6]) == (70_000, 280_000)


def test_silence_is_still_not_presence_for_a_slow_radio():
    # Five reports lost at 70 s: 420 s is beyond 4 intervals, and the visit ends.
    assert len(run(RuleSettings(), radio(70, 25, dropped=(10, 11, 12, 13, 14)))) == 2


def test_the_limits_follow_the_interval_within_their_bounds():
    limits = OfficerLimits(RuleSettings())
    iv = np.array([0, 5_000, 30_000, 51_000, 60_000, 120_000])
    # A fast radio keeps the fixed gap; a slow one gets four intervals.
    assert limits.gap(iv).tolist() == [180_000, 180_000, 180_000, 204_000, 240_000, 480_000]
    # 5.5 intervals, at most 390 s; the fixed 120 s while the interval is unknown (0).
    assert limits.grace(iv).tolist() == [120_000, 27_500, 165_000, 280_500, 330_000, 390_000]
    fixed = OfficerLimits(RuleSettings(scaling="fixed"))
    assert fixed.gap(iv).tolist() == [180_000] * 6 and fixed.grace(iv).tolist() == [120_000] * 6


def test_a_fix_that_states_a_wide_error_does_not_end_a_visit():
    # A fix 18 m outside: beyond the 5 m margin of the default 10 m accuracy at half an accuracy, unless it
    # says it is only good to 40 m (margin 20 m).
    fixes = radio(30, 10) + [(T0 + 10 * 30_000, JUST_OUTSIDE_A), (T0 + 11 * 30_000, JUST_OUTSIDE_A)] \
        + radio(30, 10, start=T0 + 12 * 30_000)
    # No grace: the first fix outside the buffer ends a visit.
    rules = RuleSettings(exit_grace_s=0, exit_grace_intervals=0, exit_margin_accuracies=0.5)
    assert len(run(rules, fixes)) == 2
    acc = np.full(len(fixes), np.nan)
    acc[10:12] = 40.0
    assert len(run(rules, fixes, acc)) == 1
    assert len(run(RuleSettings(exit_grace_s=0, scaling="fixed"), fixes, acc)) == 2


def test_the_margin_follows_accuracy_within_its_bounds():
    acc = np.array([np.nan, 5.0, 15.0, 30.0, 50.0, 400.0])
    assert OfficerLimits(RuleSettings()).margin(acc) == 0.0  # the default: no margin, the grace does it
    limits = OfficerLimits(RuleSettings(exit_margin_accuracies=0.5))
    assert limits.margin(acc).tolist() == [5.0, 2.5, 7.5, 15.0, 25.0, 50.0]
    assert OfficerLimits(RuleSettings(scaling="fixed", exit_margin_accuracies=0.5)).margin(acc) == 10.0
