"""Stay points (kernels/stays.py): the kernel against a plain reference, any cut into batches, what is held,
and what a stay does with noisy fixes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.stays import StayItems, advance_stays, empty_stay_state
from tests.reference.stays import reference_stays

RULES = dict(min_fixes=4, max_misses=1)
RADIUS_ACCURACIES = 2.5  # each fix's radius: this many times its accuracy
GAP_MS = 240_000


def track(rng, n_officers=3, n=60, interval_ms=60_000, error_m=30.0):
    """Officers walking between stays, fixes with Gaussian error; (officer, ts, x, y, acc, gap) sorted."""
    rows = []
    for o in range(n_officers):
        t, x, y = 1_700_000_000_000 + int(rng.integers(0, 60_000)), 0.0, 0.0
        for _ in range(n):
            if rng.random() < 0.15:
                x, y = x + rng.normal(0, 200), y + rng.normal(0, 200)  # a walk to the next stay
            t += interval_ms if rng.random() > 0.05 else 5 * interval_ms  # now and then a gap
            rows.append((o, t, x + rng.normal(0, error_m), y + rng.normal(0, error_m), error_m, GAP_MS))
    rows.sort(key=lambda r: (r[0], r[1]))
    cols = [np.array(c) for c in zip(*rows)]
    # What rides along: the fix before each (any number will do) and an interval estimate.
    return cols + [cols[1] - 1, rng.integers(0, 120_000, len(rows))]


def run(cols, cuts=(), final=True, radius_k=RADIUS_ACCURACIES, **rules):
    """The kernel over the fixes cut into batches at ``cuts``; every item, and the state left."""
    officer, ts, x, y, acc, gap, prev, iv = (list(cols) + [ts_minus_one(cols[1]), np.zeros(len(cols[1]), int)])[:8]
    bounds = [0, *sorted(cuts), len(ts)]
    state, items = empty_stay_state(), []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        order = np.lexsort((ts[a:b], officer[a:b]))
        state, out = advance_stays(state, officer[a:b][order], ts[a:b][order], x[a:b][order], y[a:b][order],
                                   acc[a:b][order], radius_k * acc[a:b][order], gap[a:b][order], prev_ms=prev[a:b][order],
                                   interval_ms=iv[a:b][order], final_all=final and k == len(bounds) - 2,
                                   **(RULES | rules))
        items += list(zip(*(a.tolist() for a in out)))
    return state, items


def ts_minus_one(ts):
    return np.asarray(ts) - 1


def reference(cols, radius_k=RADIUS_ACCURACIES, **rules):
    officer, ts, x, y, acc, gap, prev, iv = cols
    radius = radius_k * acc
    out = []
    for o in np.unique(officer):
        sel = officer == o
        fixes = list(zip(*(c[sel].tolist() for c in (ts, x, y, acc, radius, gap, prev, iv))))
        out += [(int(o), *item) for item in reference_stays(fixes, **(RULES | rules))]
    return out


def by_officer(items):
    return sorted(items, key=lambda r: (r[0], r[1]))


def same_items(ours, theirs):
    """Times and counts exactly; positions and accuracies to the last bits (the kernels may fuse and
    reorder float operations, see kernels/_config.py)."""
    ints = (0, 1, 2, 6, 7, 8, 9)
    assert [[r[k] for k in ints] for r in ours] == [[r[k] for k in ints] for r in theirs]
    assert np.allclose([r[3:6] for r in ours], [r[3:6] for r in theirs], rtol=1e-12, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_cuts=st.integers(0, 6), min_fixes=st.integers(2, 7),
       max_misses=st.integers(0, 3), radius=st.sampled_from([1.5, 2.5, 3.5]))
def test_any_cut_into_batches_gives_the_reference_items(seed, n_cuts, min_fixes, max_misses, radius):
    rng = np.random.default_rng(seed)
    cols = track(rng)
    cuts = rng.integers(0, len(cols[0]), n_cuts)
    rules = dict(min_fixes=min_fixes, max_misses=max_misses, radius_k=radius)
    state, items = run(cols, cuts, **rules)
    same_items(by_officer(items), by_officer(reference(cols, **rules)))
    assert len(state.officer) == 0 and len(state.held_ts_ms) == 0  # the end released everything
    # Every fix is in exactly one item.
    assert sum(r[6] for r in items) == len(cols[0])


def test_a_stay_is_one_item_at_its_centroid_covering_its_fixes():
    rng = np.random.default_rng(1)
    ts = 1_700_000_000_000 + 60_000 * np.arange(20)
    walk_in = [(-400.0, 0.0), (-250.0, 0.0), (-100.0, 0.0)]
    stay = [(rng.normal(0, 30), rng.normal(0, 30)) for _ in range(14)]
    walk_out = [(150.0, 0.0), (300.0, 0.0), (450.0, 0.0)]
    xy = np.array(walk_in + stay + walk_out)
    cols = [np.zeros(20, np.int32), ts, xy[:, 0], xy[:, 1], np.full(20, 30.0), np.full(20, GAP_MS)]
    _, items = run(cols)
    stays = [r for r in items if r[6] > 1]
    assert len(stays) == 1
    _, first, last, cx, cy, acc, n = stays[0][:7]
    # The walk-in fix 100 m out is not within 75 m of the stay's centre; so the stay starts at its first fix.
    assert (first, last) == (ts[3], ts[16]) and n == 14
    assert np.hypot(cx, cy) < 30 / np.sqrt(14) * 3  # the centroid knows the place to a few metres
    assert 30 / np.sqrt(14) <= acc <= 30 / np.sqrt(12)  # error / sqrt(members); a stray fix may be a miss
    assert [r[1] for r in items if r[6] == 1] == [*ts[:3], *ts[17:]]


def test_nothing_is_released_before_the_stay_is_decided_and_the_held_fixes_stay_bounded():
    ts = 1_700_000_000_000 + 30_000 * np.arange(200)
    cols = [np.zeros(200, np.int32), ts, np.zeros(200), np.zeros(200), np.full(200, 10.0), np.full(200, GAP_MS)]
    state, items = run(cols, cuts=range(1, 200), final=False)
    assert items == []  # one long stay, still going
    assert bool(state.active[0]) and state.n_members[0] == 200 and len(state.held_ts_ms) == 0
    # A final release (the end of a replay, silence, the live view) gives the whole stay.
    _, out = advance_stays(state, *(np.empty(0, d) for d in (np.int32, np.int64, float, float, float, float, np.int64)),
                           final_all=True, **RULES)
    assert out.n_fixes.tolist() == [200] and (out.ts_ms[0], out.end_ms[0]) == (ts[0], ts[-1])


def test_a_gap_ends_a_stay():
    ts = 1_700_000_000_000 + 60_000 * np.arange(12)
    ts[6:] += 600_000  # ten minutes of silence in the middle
    cols = [np.zeros(12, np.int32), ts, np.zeros(12), np.zeros(12), np.full(12, 30.0), np.full(12, GAP_MS)]
    _, items = run(cols)
    assert [(r[1], r[2], r[6]) for r in items] == [(ts[0], ts[5], 6), (ts[6], ts[11], 6)]


def test_the_state_given_is_not_changed():
    rng = np.random.default_rng(3)
    cols = track(rng, n=30)
    state, _ = run(cols, final=False)
    before = [a.copy() for a in state]
    order = np.lexsort((cols[1], cols[0]))
    officer, ts, x, y, acc, gap = (c[order] for c in cols[:6])
    advance_stays(state, officer, ts, x, y, acc, RADIUS_ACCURACIES * acc, gap, final_all=True, **RULES)
    assert all(np.array_equal(a, b) for a, b in zip(before, state))


def test_unsorted_fixes_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        advance_stays(empty_stay_state(), np.array([1, 0], np.int32), np.array([0, 0]), np.zeros(2), np.zeros(2),
                      np.ones(2), np.ones(2), np.ones(2, np.int64), **RULES)


def test_items_type():
    assert StayItems._fields[:3] == ("officer", "ts_ms", "end_ms")
