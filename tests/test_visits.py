"""advance_visits against the plain-Python reference, batch-split invariance
(alone and chained after order_fixes), invariants and named scenarios."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.ordering import NO_TS_MS, empty_ordering_state, order_fixes
from kernels.visits import (
    VisitState,
    Visits,
    advance_released,
    advance_visits,
    close_all,
    close_stale,
    empty_visit_state,
)
from tests.reference.ordering import ReferenceOrderer, random_stream
from tests.reference.visits import (
    ReferenceVisits,
    dwell_is_non_negative,
    locate_boxes,
    no_visit_without_entry,
    reference_visits,
    visits_have_fixes,
    visits_within_track_span,
)

T0 = 1_700_000_000_000
GAP_S = 120
GRACE_S = 60
OUT, RING, IN = 0, 1, 2


def as_tuples(v: Visits) -> list[tuple]:
    """(officer, hotspot, start, end, n_fixes) rows: the reference knows nothing of intervals."""
    return sorted(zip(*(a.tolist() for a in v[:5])))


def pairs_of(statuses_per_fix):
    """Per fix, a tuple of OUT/RING/IN per hot spot -> sorted pair arrays."""
    pf, ph, pi = [], [], []
    for f, statuses in enumerate(statuses_per_fix):
        for h, s in enumerate(statuses):
            if s != OUT:
                pf.append(f)
                ph.append(h)
                pi.append(s == IN)
    return np.array(pf, np.int64), np.array(ph, np.int64), np.array(pi, bool)


def prev_ts_of(officer, ts):
    """Each fix's predecessor in its officer's stream (NO_TS_MS for the first)."""
    prev = np.full(len(ts), NO_TS_MS, np.int64)
    last: dict[int, int] = {}
    for i, (o, t) in enumerate(zip(np.asarray(officer).tolist(), np.asarray(ts).tolist())):
        prev[i] = last.get(o, NO_TS_MS)
        last[o] = t
    return prev


def track(fixes, *, officer=0, max_gap_s=GAP_S, exit_grace_s=GRACE_S, close=True, bounds="fixes"):
    """One officer's track: fixes are (ts_s, statuses); returns
    [(hotspot, start_s, end_s, n_fixes)] of the visits."""
    ts = np.array([T0 + int(t * 1000) for t, _ in fixes], np.int64)
    pf, ph, pi = pairs_of([s for _, s in fixes])
    officers = np.full(len(fixes), officer)
    state, closed = advance_visits(empty_visit_state(), officers, ts, pf, ph, pi, max_gap_s=max_gap_s,
                                   exit_grace_s=exit_grace_s, bounds=bounds,
                                   fix_prev_ts_ms=prev_ts_of(officers, ts))
    last = close_all(state, bounds=bounds, max_gap_s=max_gap_s)
    visits = as_tuples(closed) + (as_tuples(last) if close else [])
    ref = reference_visits(officers, ts, pf, ph, pi, max_gap_s=max_gap_s,
                           exit_grace_s=exit_grace_s, close=close, bounds=bounds)
    assert sorted(visits) == ref
    assert dwell_is_non_negative(visits) and visits_have_fixes(visits)
    assert visits_within_track_span(visits, np.full(len(fixes), officer), ts)
    assert no_visit_without_entry(visits, pf, ph, pi, np.full(len(fixes), officer))
    return sorted((h, (s - T0) / 1000, (e - T0) / 1000, n) for _, h, s, e, n in visits)


# Named scenarios (one hot spot unless said) ---------------------------------------


def test_dwell_at_track_start():
    fixes = [(t, (IN,)) for t in range(0, 300, 30)] + [(t, (OUT,)) for t in range(330, 600, 30)]
    assert track(fixes) == [(0, 0, 270, 10)]


def test_dwell_at_track_end():
    fixes = [(t, (OUT,)) for t in range(0, 300, 30)] + [(t, (IN,)) for t in range(300, 600, 30)]
    assert track(fixes, close=False) == []
    assert track(fixes) == [(0, 300, 570, 10)]


def test_multiple_visits():
    fixes = ([(t, (IN,)) for t in range(0, 100, 20)] + [(t, (OUT,)) for t in range(100, 300, 20)]
             + [(t, (IN,)) for t in range(300, 400, 20)] + [(400, (OUT,)), (470, (OUT,))])
    assert track(fixes) == [(0, 0, 80, 5), (0, 300, 380, 5)]


def test_no_visit():
    fixes = [(t, (RING if t % 40 else OUT,)) for t in range(0, 600, 20)]
    assert track(fixes) == []


def test_jitter_on_boundary():
    # GPS error flips the fix between polygon and ring: one visit, ending at the
    # last fix inside the polygon, not at the last ring fix.
    pattern = [IN, RING, IN, RING, RING, IN, RING, IN, RING, RING]
    fixes = [(i * 15, (s,)) for i, s in enumerate(pattern)]
    fixes += [(150 + i * 15, (OUT,)) for i in range(6)]
    assert track(fixes) == [(0, 0, 105, 4)]


def test_gap_longer_than_max_gap():
    fixes = [(0, (IN,)), (30, (IN,)), (30 + GAP_S + 1, (IN,)), (30 + GAP_S + 31, (IN,))]
    assert track(fixes) == [(0, 0, 30, 2), (0, 151, 181, 2)]


def test_gap_of_exactly_max_gap_is_not_a_gap():
    assert track([(0, (IN,)), (GAP_S, (IN,))]) == [(0, 0, GAP_S, 2)]


def test_short_excursion_within_grace():
    # Out from 20 s to the fix back at 75 s: 55 s < grace. (Back at 80 s the
    # excursion would be a full 60 s and end the visit.)
    fixes = [(0, (IN,)), (20, (OUT,)), (40, (OUT,)), (70, (OUT,)), (75, (IN,))]
    assert track(fixes) == [(0, 0, 75, 2)]


def test_excursion_longer_than_grace():
    # Out since 20 s; the fix at 80 s is 60 s out (>= grace): the visit ends at 0.
    fixes = [(0, (IN,)), (20, (OUT,)), (40, (OUT,)), (80, (OUT,)), (90, (IN,))]
    assert track(fixes) == [(0, 0, 0, 1), (0, 90, 90, 1)]


def test_return_after_long_excursion_starts_a_new_visit():
    # Sparse radio: one fix outside at 10 s, the next one back inside at 170 s.
    # The officer was away at least 160 s (>= the 60 s grace), so the first
    # visit ends at 0 s and a new one opens at 170 s.
    fixes = [(0, (IN,)), (10, (OUT,)), (170, (IN,)), (300, (IN,))]
    assert track(fixes, max_gap_s=600) == [(0, 0, 0, 1), (0, 170, 300, 2)]


def test_return_within_grace_continues_the_visit():
    # Back at 69 s, 59 s after the first fix outside: forgiven, one visit; a
    # later excursion starts its own count.
    fixes = [(0, (IN,)), (10, (OUT,)), (69, (IN,)), (100, (OUT,)), (150, (RING,)), (200, (IN,))]
    assert track(fixes) == [(0, 0, 200, 3)]


def test_return_at_exactly_grace_ends_the_visit():
    fixes = [(0, (IN,)), (10, (OUT,)), (10 + GRACE_S, (IN,))]
    assert track(fixes) == [(0, 0, 0, 1), (0, 70, 70, 1)]


def test_return_to_ring_after_long_excursion_closes_without_reopening():
    # Back only in the buffer ring: the visit ends at its last inside fix and
    # no new one opens until a fix inside the polygon.
    fixes = [(0, (IN,)), (20, (IN,)), (30, (OUT,)), (100, (RING,)), (110, (RING,)), (130, (IN,))]
    assert track(fixes) == [(0, 0, 20, 2), (0, 130, 130, 1)]
    assert track(fixes[:5]) == [(0, 0, 20, 2)]


def test_return_after_gap_is_judged_by_the_gap_rule_first():
    # 130 s of silence after the fix outside (> max_gap): the gap closes the
    # visit, and the fix back opens the next one, as before.
    fixes = [(0, (IN,)), (10, (OUT,)), (140, (IN,))]
    assert track(fixes) == [(0, 0, 0, 1), (0, 140, 140, 1)]


def test_long_excursion_in_one_hot_spot_only():
    # Overlapping hot spots: the officer leaves hot spot 0's buffer but stays
    # in hot spot 1; only hot spot 0's visit is split.
    fixes = [(0, (IN, IN)), (10, (OUT, IN)), (90, (IN, IN)), (100, (IN, IN))]
    assert track(fixes) == [(0, 0, 0, 1), (0, 90, 100, 2), (1, 0, 100, 4)]


def test_zero_grace_ends_a_visit_at_the_first_fix_outside_the_buffer():
    fixes = [(0, (IN,)), (10, (RING,)), (20, (OUT,)), (30, (IN,))]
    assert track(fixes, exit_grace_s=0) == [(0, 0, 0, 1), (0, 30, 30, 1)]


def test_overlapping_hotspots_independent():
    fixes = [(0, (IN, IN)), (20, (IN, IN)), (40, (OUT, IN)), (60, (OUT, IN)), (120, (OUT, IN)),
             (140, (IN, RING)), (300, (OUT, OUT))]
    assert track(fixes) == [(0, 0, 20, 2), (0, 140, 140, 1), (1, 0, 120, 5)]


# Midpoint bounds: halfway to the neighbouring fix, within max_gap only.


def test_midpoint_bounds_halfway_to_the_neighbours():
    fixes = [(0, (OUT,)), (30, (IN,)), (60, (IN,)), (90, (RING,)), (120, (OUT,)), (150, (OUT,)),
             (180, (OUT,)), (210, (OUT,))]
    assert track(fixes) == [(0, 30, 60, 2)]
    # Starts halfway back to 0 s, ends halfway on to the ring fix at 90 s.
    assert track(fixes, bounds="midpoint") == [(0, 15, 75, 2)]


def test_midpoint_bounds_do_not_reach_across_a_gap():
    # 150 s before the first inside fix and after the last: more than max_gap
    # (120 s), so silence is not presence and the ends stay at the fixes.
    fixes = [(0, (OUT,)), (150, (IN,)), (180, (IN,)), (330, (OUT,))]
    assert track(fixes, bounds="midpoint") == [(0, 150, 180, 2)]


def test_midpoint_bounds_of_the_first_fix_and_an_open_visit():
    # No fix before the first: the start is the fix; a visit still open at the
    # end closes at its last inside fix, or halfway to a later ring fix.
    assert track([(0, (IN,)), (30, (IN,))], bounds="midpoint") == [(0, 0, 30, 2)]
    assert track([(0, (IN,)), (30, (IN,)), (50, (RING,))], bounds="midpoint") == [(0, 0, 40, 2)]


def test_midpoint_bounds_around_an_excursion():
    # Out at 20 s for the grace: the visit ends halfway to 20 s; back in at
    # 90 s, the next starts halfway back to the fix at 80 s.
    fixes = [(0, (IN,)), (20, (OUT,)), (40, (OUT,)), (80, (OUT,)), (90, (IN,)), (100, (IN,))]
    assert track(fixes, bounds="midpoint") == [(0, 0, 10, 1), (0, 85, 100, 2)]


def test_midpoint_bounds_need_the_previous_fixes():
    with pytest.raises(ValueError, match="fix_prev_ts_ms"):
        advance_visits(empty_visit_state(), [0], [T0], [0], [0], [True], max_gap_s=GAP_S,
                       exit_grace_s=GRACE_S, bounds="midpoint")
    with pytest.raises(ValueError, match="bounds"):
        advance_visits(empty_visit_state(), [0], [T0], [0], [0], [True], max_gap_s=GAP_S,
                       exit_grace_s=GRACE_S, bounds="interpolated")


def test_close_stale_closes_silent_officers_only():
    ts = np.array([T0, T0 + 600_000], np.int64)
    state, closed = advance_visits(empty_visit_state(), [0, 1], ts, [0, 1], [3, 3], [True, True],
                                   max_gap_s=GAP_S, exit_grace_s=GRACE_S)
    assert closed.officer.shape == (0,)
    state, stale = close_stale(state, T0 + 600_000 + 1000, max_gap_s=GAP_S)
    assert as_tuples(stale) == [(0, 3, T0, T0, 1)]
    assert state.officer.tolist() == [1]
    state, stale = close_stale(state, T0 + 600_000 + GAP_S * 1000, max_gap_s=GAP_S)
    assert stale.officer.shape == (0,) and state.officer.tolist() == [1]


def test_state_rows():
    ts = T0 + np.array([0, 10_000, 20_000])
    state, _ = advance_visits(empty_visit_state(), [4, 4, 4], ts, [0, 1, 2], [2, 1, 2],
                              [True, True, False], max_gap_s=GAP_S, exit_grace_s=GRACE_S)
    assert isinstance(state, VisitState)
    assert state.officer.tolist() == [4, 4] and state.hotspot.tolist() == [1, 2]
    assert state.start_ms.tolist() == [T0 + 10_000, T0]
    assert state.last_in_ms.tolist() == [T0 + 10_000, T0]
    assert state.last_seen_ms.tolist() == [T0 + 20_000, T0 + 20_000]
    assert state.out_since_ms.tolist() == [T0 + 20_000, NO_TS_MS]
    assert state.after_in_ms.tolist() == [T0 + 20_000, T0 + 10_000]
    assert state.n_fixes.tolist() == [1, 1]
    assert state.officer.dtype == np.int32 and state.start_ms.dtype == np.int64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0, 1, 0], [0, 0, 1], [], [], []), "contiguous"),
        (([0, 0], [5, 4], [], [], []), "non-decreasing"),
        (([0, 0], [0, 1], [1, 0], [0, 0], [True, True]), "sorted"),
        (([0], [0], [1], [0], [True]), "index"),
        (([0], [0], [0], [0, 1], [True]), "length"),
    ],
)
def test_bad_input_raises_value_error(args, message):
    with pytest.raises(ValueError, match=message):
        advance_visits(empty_visit_state(), *args, max_gap_s=GAP_S, exit_grace_s=GRACE_S)


def test_fix_older_than_open_visit_raises():
    state, _ = advance_visits(empty_visit_state(), [0], [T0], [0], [0], [True],
                              max_gap_s=GAP_S, exit_grace_s=GRACE_S)
    with pytest.raises(ValueError, match="older than"):
        advance_visits(state, [0], [T0 - 1], [], [], [], max_gap_s=GAP_S, exit_grace_s=GRACE_S)


# Generated pair streams -----------------------------------------------------------

STEP_MS = [0, 1000, 10_000, 20_000, 59_000, 60_000, 61_000, 130_000]


@st.composite
def pair_streams(draw, max_fixes=60):
    """Interleaved officers in arrival order; per fix and hot spot OUT, RING or
    IN (boundary jitter), steps around the grace and gap thresholds."""
    n_officers = draw(st.integers(1, 3))
    n_hot = draw(st.integers(1, 3))
    specs = draw(st.lists(
        st.tuples(st.integers(0, n_officers - 1), st.sampled_from(STEP_MS),
                  st.tuples(*[st.sampled_from([OUT, RING, IN])] * n_hot)),
        max_size=max_fixes,
    ))  # fmt: skip
    clock = {o: T0 for o in range(n_officers)}
    officer, ts, statuses = [], [], []
    for o, step, s in specs:
        clock[o] += step
        officer.append(o)
        ts.append(clock[o])
        statuses.append(s)
    return np.array(officer, np.int64), np.array(ts, np.int64), statuses


VISIT_PARAMS = st.fixed_dictionaries(dict(
    max_gap_s=st.sampled_from([10, 60, 120]),
    exit_grace_s=st.sampled_from([0, 20, 60, 300]),
    bounds=st.sampled_from(["fixes", "midpoint"]),
))  # fmt: skip


def grouped(officer, ts, prev, statuses, rank):
    """A batch as the ordering stage releases it: each officer contiguous,
    groups in ``rank`` order (not necessarily ascending)."""
    order = np.argsort(rank[officer], kind="stable")
    pf, ph, pi = pairs_of([statuses[i] for i in order])
    return officer[order], ts[order], pf, ph, pi, prev[order]


def run_visit_batches(stream, cuts, params, rank):
    officer, ts, statuses = stream
    prev = prev_ts_of(officer, ts)
    cut_at = [0, *sorted(cuts), len(officer)]
    state, visits = empty_visit_state(), []
    for a, b in zip(cut_at[:-1], cut_at[1:]):
        *batch, batch_prev = grouped(officer[a:b], ts[a:b], prev[a:b], statuses[a:b], rank)
        state, closed = advance_visits(state, *batch, fix_prev_ts_ms=batch_prev, **params)
        visits += as_tuples(closed)
    return state, visits


@settings(max_examples=500, deadline=None)
@given(stream=pair_streams(), params=VISIT_PARAMS, data=st.data())
def test_advance_visits_matches_reference(stream, params, data):
    officer, ts, statuses = stream
    rank = np.array(data.draw(st.permutations(range(3))))
    state, visits = run_visit_batches(stream, [], params, rank)
    ref = ReferenceVisits(**params)
    ref_closed = []
    for i, (o, t) in enumerate(zip(officer.tolist(), ts.tolist())):
        pairs = {h: s == IN for h, s in enumerate(statuses[i]) if s != OUT}
        ref_closed += ref.fix(o, t, pairs)
    assert sorted(visits) == sorted(ref_closed)
    open_rows = [
        (o, h, s, li, ls, None if out == NO_TS_MS else out, None if after == NO_TS_MS else after, n)
        for o, h, s, li, ls, out, after, n in zip(*(a.tolist() for a in state))
    ]
    assert open_rows == ref.open_rows()
    assert sorted(as_tuples(close_all(state, bounds=params["bounds"], max_gap_s=params["max_gap_s"]))) \
        == sorted(ref.close_all())
    everything = visits + as_tuples(close_all(state))
    pf, ph, pi = pairs_of(statuses)
    assert dwell_is_non_negative(everything) and visits_have_fixes(everything)
    assert visits_within_track_span(everything, officer, ts)
    assert no_visit_without_entry(everything, pf, ph, pi, officer)


@settings(max_examples=300, deadline=None)
@given(stream=pair_streams(), bounds=st.sampled_from(["fixes", "midpoint"]), data=st.data())
def test_thresholds_that_change_fix_by_fix_match_the_reference(stream, bounds, data):
    """Adaptive rules give every fix its own gap limit and exit grace (from the officer's interval): the
    kernel applies each fix's own, as the reference does, and reports them with the visits it closes."""
    officer, ts, statuses = stream
    n = len(officer)
    gap = np.array(data.draw(st.lists(st.sampled_from([10_000, 60_000, 120_000, 400_000]), min_size=n,
                                      max_size=n)), np.int64)
    grace = np.array(data.draw(st.lists(st.sampled_from([0, 20_000, 60_000, 300_000]), min_size=n,
                                        max_size=n)), np.int64)
    iv = gap // 4
    prev = prev_ts_of(officer, ts)
    order = np.argsort(officer, kind="stable")
    pf, ph, pi = pairs_of([statuses[i] for i in order])
    state, closed = advance_visits(empty_visit_state(), officer[order], ts[order], pf, ph, pi, max_gap_s=1,
                                   exit_grace_s=1, bounds=bounds, fix_prev_ts_ms=prev[order],
                                   fix_gap_ms=gap[order], fix_grace_ms=grace[order], fix_interval_ms=iv[order])
    ref = ReferenceVisits(1, 1, bounds)
    ref_closed, limit_at_close = [], {}
    for i, (o, t) in enumerate(zip(officer.tolist(), ts.tolist())):
        pairs = {h: s == IN for h, s in enumerate(statuses[i]) if s != OUT}
        for v in ref.fix(o, t, pairs, gap_ms=int(gap[i]), grace_ms=int(grace[i])):
            ref_closed.append(v)
            limit_at_close[v] = (int(iv[i]), int(gap[i]))
    assert as_tuples(closed) == sorted(ref_closed)
    rows = zip(*(a.tolist() for a in closed[:5]))
    assert sorted(zip(rows, zip(closed.interval_ms.tolist(), closed.gap_limit_ms.tolist()))) \
        == sorted((v, limit_at_close[v]) for v in ref_closed)
    last_gap = {o: int(g) for o, g in zip(officer.tolist(), gap.tolist())}
    ends = close_all(state, bounds=bounds, gap_limit_ms=np.array([last_gap[o] for o in state.officer.tolist()],
                                                                 np.int64))
    assert as_tuples(ends) == sorted(ref.close_all(last_gap))


@settings(max_examples=300, deadline=None)
@given(stream=pair_streams(), params=VISIT_PARAMS, data=st.data())
def test_advance_visits_batch_split_invariance(stream, params, data):
    cuts = data.draw(st.lists(st.integers(0, len(stream[0])), max_size=6))
    rank = np.array(data.draw(st.permutations(range(3))))
    whole_state, whole = run_visit_batches(stream, [], params, np.arange(3))
    split_state, split = run_visit_batches(stream, cuts, params, rank)
    assert sorted(split) == sorted(whole)
    for a, b in zip(split_state, whole_state):
        np.testing.assert_array_equal(a, b)


# order_fixes -> locate -> advance_visits, chained -------------------------------

BOXES = [(0, 0, 100, 100), (80, 0, 180, 100), (300, 300, 400, 400)]
MARGIN_M = 15
CHAIN = dict(reorder_window_s=20, max_speed_mps=8, max_gap_s=120, exit_grace_s=30)
ORDER_KW = dict(reorder_window_s=20, max_speed_mps=8, max_gap_s=120)
VISIT_KW = dict(max_gap_s=120, exit_grace_s=30)


@st.composite
def walks(draw, max_fixes=60):
    """Officers walking among three boxes (two overlapping), arriving with
    network delays; duplicates, teleports and gaps included."""
    n_officers = draw(st.integers(1, 3))
    specs = draw(st.lists(
        st.tuples(st.integers(0, n_officers - 1),
                  st.sampled_from([0, 5_000, 10_000, 30_000, 200_000]),
                  st.integers(-60, 60), st.integers(-60, 60), st.booleans(),
                  st.sampled_from([0, 0, 0, 10_000, 60_000])),
        max_size=max_fixes,
    ))  # fmt: skip
    pos = {o: [draw(st.integers(-50, 250)), draw(st.integers(-50, 250)), T0] for o in range(n_officers)}
    fixes = []
    for i, (o, step, dx, dy, teleport, delay) in enumerate(specs):
        p = pos[o]
        p[2] += step
        p[0] += dx + (5_000 if teleport and i % 7 == 0 else 0)
        p[1] += dy
        fixes.append((p[2] + delay, i, o, p[2], p[0], p[1]))
    fixes.sort()
    cols = list(zip(*fixes)) or [()] * 6
    _, row, o, t, x, y = (np.array(c) for c in cols)
    return (o.astype(np.int64), t.astype(np.int64), x.astype(np.float64),
            y.astype(np.float64), row.astype(np.int64))


def run_chain(stream, cuts, boxes=BOXES, bounds="fixes"):
    cut_at = [0, *sorted(cuts), len(stream[0])]
    o_state, v_state = empty_ordering_state(), empty_visit_state()
    visits, rejected, released = [], [], []
    for k, (a, b) in enumerate(zip(cut_at[:-1], cut_at[1:])):
        o_state, rel, rej = order_fixes(o_state, *(c[a:b] for c in stream),
                                        flush=k == len(cut_at) - 2, **ORDER_KW)
        pf, ph, pi = locate_boxes(rel.x_m, rel.y_m, boxes, MARGIN_M)
        before = v_state
        v_state, closed = advance_visits(v_state, rel.officer, rel.ts_ms, pf, ph, pi, bounds=bounds,
                                         fix_prev_ts_ms=rel.prev_ts_ms, **VISIT_KW)
        check_advance_released(before, rel, (pf, ph, pi), bounds, v_state, closed)
        visits += as_tuples(closed)
        rejected += zip(rej.row.tolist(), rej.reason.tolist())
        released += zip(rel.officer.tolist(), rel.ts_ms.tolist())
    visits += as_tuples(close_all(v_state, bounds=bounds, max_gap_s=VISIT_KW["max_gap_s"]))
    return sorted(visits), sorted(rejected), released


def check_advance_released(before, rel, pairs, bounds, want_state, want_closed):
    """The streaming engine's unchecked entry gives the same state and visits, and reports as opened exactly
    the open visits that were not open before."""
    n = rel.officer.shape[0]
    state, closed, opened = advance_released(
        before, rel, *pairs, fix_gap_ms=np.full(n, VISIT_KW["max_gap_s"] * 1000, np.int64),
        fix_grace_ms=np.full(n, VISIT_KW["exit_grace_s"] * 1000, np.int64), fix_interval_ms=np.zeros(n, np.int64),
        midpoint=bounds == "midpoint")
    for a, b in zip(state, want_state):
        np.testing.assert_array_equal(a, b)
    assert as_tuples(closed) == as_tuples(want_closed)
    was_open = set(zip(before.officer.tolist(), before.hotspot.tolist(), before.start_ms.tolist()))
    now = list(zip(state.officer.tolist(), state.hotspot.tolist(), state.start_ms.tolist()))
    assert opened.tolist() == [i for i, k in enumerate(now) if k not in was_open]


def reference_chain(stream, boxes=BOXES, bounds="fixes"):
    ref_o = ReferenceOrderer(**ORDER_KW)
    ref_v = ReferenceVisits(**VISIT_KW, bounds=bounds)
    released = []
    for o, t, x, y, r in zip(*stream):
        released += ref_o.push(int(o), int(t), float(x), float(y), int(r))[0]
    released += ref_o.flush()[0]
    released.sort(key=lambda f: f[0])  # per officer, release order
    visits = []
    for o, t, x, y, _ in released:
        pf, ph, pi = locate_boxes([x], [y], boxes, MARGIN_M)
        visits += ref_v.fix(o, t, dict(zip(ph.tolist(), pi.tolist())))
    return sorted(visits + ref_v.close_all()), released


@settings(max_examples=300, deadline=None)
@given(stream=walks(), data=st.data())
def test_chained_batch_split_invariance_and_reference(stream, data):
    cuts = data.draw(st.lists(st.integers(0, len(stream[0])), max_size=6))
    bounds = data.draw(st.sampled_from(["fixes", "midpoint"]))
    whole, whole_rej, released = run_chain(stream, [], bounds=bounds)
    split, split_rej, _ = run_chain(stream, cuts, bounds=bounds)
    assert split == whole
    assert split_rej == whole_rej
    ref_visits, ref_released = reference_chain(stream, bounds=bounds)
    assert whole == ref_visits
    officers, ts = np.array([f[0] for f in released], int), np.array([f[1] for f in released], int)
    assert visits_within_track_span(whole, officers, ts)
    assert dwell_is_non_negative(whole) and visits_have_fixes(whole)


@pytest.mark.parametrize("bounds", ["fixes", "midpoint"])
def test_seeded_chain_matches_reference_in_batches(bounds):
    # A bigger stream than hypothesis draws: 60 officers, 6000 fixes around
    # 150 m cells, late and duplicate fixes, teleports; cut into 7 batches.
    o, t, x, y, r = random_stream(11, 6_000, 60, late_share=0.05, dup_share=0.02,
                                  teleport_share=0.005)
    boxes = [(400_000 + i * 150 + dx, 280_000 + j * 150, 400_000 + i * 150 + dx + 150,
              280_000 + j * 150 + 150) for i in range(0, 14, 2) for j in range(0, 14, 3)
             for dx in (0, 60)]  # pairs of overlapping cells
    stream = (o, t, x, y, r)
    visits, _, _ = run_chain(stream, [500, 1500, 1501, 3000, 4200, 5999], boxes, bounds)
    ref_visits, _ = reference_chain(stream, boxes, bounds)
    assert visits == ref_visits
    assert len(visits) > 50 and sum(v[4] > 1 for v in visits) > 10


# Kernel bodies under the interpreter, so coverage sees them -------------------------


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already interpreted")
def test_kernels_without_jit():
    root = Path(__file__).resolve().parents[1]
    subset = ("dwell or visit or jitter or gap or excursion or grace or overlapping or stale "
              "or late or reordered or duplicate or speed or window or fence or state "
              "or order_fixes_matches or chained or reanchor or return or interval or estimates")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", subset,
         "tests/test_ordering.py", "tests/test_visits.py", "tests/test_fences.py", "tests/test_report_interval.py"],
        cwd=root, env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
