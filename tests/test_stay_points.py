"""Stay points in the engine: a coarse radio's stay judged at its centroid, held until it is decided, shown
live as a replay of the fixes so far would show it, released by silence and by the end, and checkpointed."""

import numpy as np

from stream.engine import DwellEngine, RuleSettings
from stream.fixes import FixColumns
from tests.test_adaptive_rules import run
from tests.test_replay import CENTRE, test_hotspots
from tests.test_silence import PROJ, T0

# Hot spot A is a 150 m square about CENTRE; the officer stands 15 m inside its west edge.
STAND = (CENTRE[0] - 75.0 + 15.0, CENTRE[1])
FAR_WEST = (CENTRE[0] - 600.0, CENTRE[1])
NO_STAYS = RuleSettings(stay_min_fixes=0)


def coarse_radio(seed, n=25, interval_s=60, error_m=30.0):
    """Walk in from the west, stand 15 m inside A for n reports, walk away: 60 s reports with 30 m of error
    (at the stay; the walk's reports are exact, to keep its fixes out of the stay)."""
    rng = np.random.default_rng(seed)
    walk_in = [(FAR_WEST[0] + k * 120.0, CENTRE[1]) for k in range(4)]
    stand = [STAND] * n
    walk_out = [(STAND[0] - 150.0 * (k + 1), CENTRE[1]) for k in range(4)]
    path = np.array(walk_in + stand + walk_out)
    noisy = path + rng.normal(0, error_m, path.shape) * np.r_[np.zeros(4), np.ones(n), np.zeros(4)][:, None]
    ts = [T0 + k * interval_s * 1000 for k in range(len(path))]
    return list(zip(ts, map(tuple, noisy))), ts[4], ts[4 + n - 1]


def test_a_coarse_radio_s_stay_is_one_patrol_from_its_first_report():
    # Reports every 120 s with 50 m of error: the stay's radius (125 m) is less than a walker covers
    # between two reports (168 m), so stays are looked for.
    def found(visits, first, last):
        """One patrol, its ends within two reports of the stay's (as the accuracy bench scores them)."""
        return len(visits) == 1 and abs(visits[0][2] - (first - 60_000)) <= 240_000 \
            and abs(visits[0][3] - (last + 60_000)) <= 240_000 and visits[0][3] - visits[0][2] >= 900_000

    with_stays = without = 0
    for seed in range(30):
        fixes, first, last = coarse_radio(seed, n=12, interval_s=120, error_m=50.0)
        acc = np.full(len(fixes), 50.0)
        with_stays += found(run(RuleSettings(), fixes, acc), first, last)
        without += found(run(NO_STAYS, fixes, acc), first, last)
    # Fix by fix, over a third of the reports land outside: late starts, early ends, splits. At the
    # centroid the stay is found on most days (its centroid is still 50 m / sqrt(12) out).
    assert with_stays >= 18 and without <= with_stays - 8


def test_no_stay_is_looked_for_where_a_walk_cannot_be_told_from_one():
    # 10 s reports with 15 m of error: a walker covers 14 m between reports, inside a stay's 37.5 m.
    for seed in range(5):
        fixes, _, _ = coarse_radio(seed, n=60, interval_s=10, error_m=15.0)
        acc = np.full(len(fixes), 15.0)
        visits = run(RuleSettings(), fixes, acc)
        assert visits and visits == run(NO_STAYS, fixes, acc)  # fix by fix, as with stays off


def feed(engine, fixes, accuracy=30.0):
    """One officer's (ts_ms, (x, y)) fixes as one step of ``engine``."""
    ts = np.array([t for t, _ in fixes], np.int64)
    xy = np.array([p for _, p in fixes], np.float64)
    lon, lat = PROJ.to_wgs84(xy[:, 0], xy[:, 1])
    n = len(fixes)
    return engine.step(FixColumns(np.arange(n), np.zeros(n, np.int64), ts, lat, lon, np.full(n, accuracy)))


def engine_with(fixes, rules=RuleSettings(), accuracy=30.0):
    engine = DwellEngine(test_hotspots(), rules)
    return engine, feed(engine, fixes, accuracy)


def test_the_live_view_shows_a_held_stay_as_a_replay_of_the_fixes_so_far_does():
    fixes, first, _ = coarse_radio(3)
    engine, out = engine_with(fixes[:12])  # the walk in and eight reports standing: the stay is still held
    assert len(engine._stays.officer) == 1 and len(out.visits.start_ms) == 0
    live = engine.open_visits()
    # The same fixes replayed to their end give that visit.
    [visit] = run(RuleSettings(), fixes[:12], np.full(12, 30.0))
    assert (live.hotspot.tolist(), live.start_ms.tolist()) == ([0], [visit[2]])
    assert first <= live.end_ms[0] <= visit[3]  # the last report at the stay (open: no midpoint yet)
    assert abs(visit[2] - first) <= 120_000
    # visit.opened waits for the stay to be released: the live view could still move it, and every visit
    # announced open must come to close.
    assert engine.opened_visits().start_ms.size == 0
    feed(engine, fixes[12:])
    [whole] = run(RuleSettings(), fixes, np.full(len(fixes), 30.0))
    assert engine.opened_visits().start_ms.tolist() == [whole[2]]  # the walk away released the stay


def test_a_day_close_does_not_split_the_visit_of_an_officer_whose_fixes_a_stay_holds():
    # Three reports inside A, then an hour standing elsewhere in A: the stay holds his newer fixes, so
    # his visit's last fix is old, yet he is not silent.
    ts = [T0 + k * 60_000 for k in range(63)]
    rng = np.random.default_rng(2)
    xy = [(CENTRE[0] - 50.0, CENTRE[1] - 50.0)] * 3 + \
        [(CENTRE[0] - 50.0 + rng.normal(0, 10), CENTRE[1] + 50.0 + rng.normal(0, 10)) for _ in range(60)]
    fixes = list(zip(ts, xy))
    whole = run(RuleSettings(), fixes, np.full(63, 30.0))
    engine, first = engine_with(fixes[:30])
    engine.release_pending()
    closed = engine.close_stale(ts[25]).start_ms
    out = feed(engine, fixes[30:])
    end = engine.finish()
    got = [v for part in (first.visits, out.visits, end.visits) for v in zip(*(a.tolist() for a in part))]
    assert closed.size == 0 and got == whole and len(whole) == 1


def test_a_state_saved_with_stays_restores_without_them_and_loses_nothing():
    fixes, _, _ = coarse_radio(5)
    engine, first = engine_with(fixes[:15])
    assert len(engine._stays.officer) == 1 and engine._stays.active[0]
    held = int(engine._stays.n_span[0])  # fixes of the stay, held when saved
    saved = {k: v.copy() for k, v in engine.export_state().items()}
    for rules in (NO_STAYS, RuleSettings(scaling="fixed")):
        restored = DwellEngine(test_hotspots(), rules)
        restored.import_state(saved)
        assert len(restored._stays.officer) == 0  # released at once
        rest = feed(restored, fixes[15:])
        end = restored.finish()
        got = [v for part in (first.visits, rest.visits, end.visits) for v in zip(*(a.tolist() for a in part))]
        # The stay went on as one at its centroid: a visit counts every one of its fixes.
        assert max(v[4] for v in got) >= held >= 6


def test_silence_releases_a_held_stay_and_closes_its_visit():
    # A day whose first eight reports at the stay put it inside A (with 30 m of error not every one does).
    fixes = next(f for f, _, _ in map(coarse_radio, range(50)) if run(RuleSettings(), f[:12], np.full(12, 30.0)))
    engine, _ = engine_with(fixes[:12])
    last_ts = fixes[11][0]
    assert engine.close_silent(last_ts + 100_000).visits.start_ms.size == 0  # not yet silent
    closed = engine.close_silent(last_ts + 400_000).visits  # silent for over the gap limit (4 x 60 s)
    [visit] = run(RuleSettings(), fixes[:12], np.full(12, 30.0))  # the replay's visit of those fixes
    assert closed.start_ms.tolist() == [visit[2]] and closed.end_ms.tolist() == [visit[3]] == [last_ts]
    assert len(engine._stays.officer) == 0 and engine.open_visits().start_ms.size == 0


def test_a_checkpoint_with_a_held_stay_restores_to_the_same_visits():
    fixes, _, _ = coarse_radio(5)
    whole = run(RuleSettings(), fixes, np.full(len(fixes), 30.0))
    engine, first_part = engine_with(fixes[:15])
    saved = {k: v.copy() for k, v in engine.export_state().items()}
    restored = DwellEngine(test_hotspots(), RuleSettings())
    restored.import_state(saved)
    rest = feed(restored, fixes[15:])
    end = restored.finish()
    got = [v for part in (first_part.visits, rest.visits, end.visits) for v in zip(*(a.tolist() for a in part))]
    assert got == whole and len(got) == 1


def test_a_state_saved_before_stay_points_restores_with_none_held():
    engine, _ = engine_with(coarse_radio(6)[0][:6], rules=NO_STAYS)
    old = {k: v for k, v in engine.export_state().items() if not k.startswith("stays_")}
    restored = DwellEngine(test_hotspots(), RuleSettings())
    restored.import_state(old)
    assert len(restored._stays.officer) == 0 and len(restored._stays.held_ts_ms) == 0
