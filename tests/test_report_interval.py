"""Each officer's reporting interval: the kernel against a plain-Python reference, batch-cut invariance,
and the robustness the rules rely on (drops, bursts, duplicates, a change of rate mid-shift)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.ordering import NO_TS_MS, empty_ordering_state, order_fixes
from kernels.report_interval import (GAP_WINDOW, MIN_GAPS, current_intervals, empty_interval_state,
                                     estimate_intervals)
from tests.reference.report_interval import ReferenceIntervals

T0 = 1_711_900_000_000
ORDER = dict(reorder_window_s=60, max_speed_mps=50)


def released_stream(fixes, cuts=()):
    """(officer, ts_ms) arrivals through the reorder buffer, cut into batches; the released fixes in
    release order with their previous accepted fix."""
    o = np.array([f[0] for f in fixes], np.int64)
    t = np.array([f[1] for f in fixes], np.int64)
    bounds = [0, *sorted(cuts), len(fixes)]
    state = empty_ordering_state()
    batches = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        state, rel, _ = order_fixes(state, o[a:b], t[a:b], np.zeros(b - a), np.zeros(b - a), np.arange(a, b),
                                    flush=k == len(bounds) - 2, **ORDER)
        batches.append((rel.officer, rel.prev_ts_ms, rel.ts_ms))
    return batches


def kernel_estimates(batches, inplace=False):
    state = empty_interval_state()
    out = []
    for officer, prev, ts in batches:
        state, est = estimate_intervals(state, officer, prev, ts, inplace=inplace)
        out += list(zip(officer.tolist(), ts.tolist(), est.tolist()))
    return state, out


def reference_estimates(batches):
    ref = ReferenceIntervals()
    out = []
    for officer, prev, ts in batches:
        for o, p, t in zip(officer.tolist(), prev.tolist(), ts.tolist()):
            out.append((o, t, ref.push(o, None if p == NO_TS_MS else p, t)))
    return ref, out


@st.composite
def shifts(draw):
    """Up to four officers, each at a rate of its own that may change mid-shift, with drops, bursts,
    duplicates and arrivals out of order within and beyond the reorder window."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    fixes = []
    for o in range(draw(st.integers(1, 4))):
        t = T0 + int(rng.integers(0, 100_000))
        rate = int(rng.choice([5_000, 15_000, 30_000, 60_000, 120_000]))
        for _ in range(int(rng.integers(0, 80))):
            r = rng.random()
            if r < 0.05:
                rate = int(rng.choice([5_000, 15_000, 30_000, 60_000, 120_000]))  # a change of rate
            step = rate * (2 if r < 0.15 else 1)  # a dropped report
            if 0.15 <= r < 0.2:
                step = int(rng.integers(1, 2_000))  # a burst
            t += step
            delay = int(rng.choice([0, 0, 0, 5_000, 90_000]))
            fixes.append((t + delay, o, t))
            if rng.random() < 0.03:
                fixes.append((t + delay + 1, o, t))  # a duplicate
    fixes.sort()
    cuts = draw(st.lists(st.integers(0, len(fixes)), max_size=5))
    return [(o, t) for _, o, t in fixes], cuts


@settings(max_examples=200, deadline=None)
@given(case=shifts(), inplace=st.booleans())
def test_estimates_match_the_reference_however_the_stream_is_cut(case, inplace):
    fixes, cuts = case
    whole = released_stream(fixes)
    state, got = kernel_estimates(released_stream(fixes, cuts), inplace=inplace)
    ref, want = reference_estimates(whole)
    assert sorted(got) == sorted(want)
    officers = sorted(ref.gaps)
    if officers:
        assert current_intervals(state, officers).tolist() == [ref.estimate(o) for o in officers]


def _single(ts):
    batches = released_stream([(0, t) for t in ts])
    return kernel_estimates(batches)[1]


def regular(n, rate_ms, start=T0):
    return [start + k * rate_ms for k in range(n)]


def test_no_estimate_before_three_gaps():
    est = [e for _, _, e in _single(regular(6, 30_000))]
    assert est == [0, 0, 0, 0, 30_000, 30_000]  # the fifth fix is the first with three gaps before it


def test_interval_ignores_dropped_reports():
    # 60 s radio, four reports of every nine dropped: in any nine gaps the 120 s ones are a minority.
    ts, t = [], T0
    for k in range(40):
        t += 120_000 if k % 9 in (1, 3, 5, 7) else 60_000
        ts.append(t)
    assert {e for _, _, e in _single(ts)[GAP_WINDOW + 1:]} == {60_000}


def test_interval_ignores_a_burst():
    # A reconnecting app sends four fixes within two seconds, among 30 s reports.
    ts = regular(20, 30_000)
    t = ts[-1]
    ts += [t + 500, t + 1_000, t + 1_500, t + 2_000] + regular(10, 30_000, t + 32_000)
    assert {e for _, _, e in _single(ts)[MIN_GAPS + 1:]} == {30_000}


def test_interval_follows_a_change_of_rate_after_five_gaps():
    for old, new in ((60_000, 10_000), (10_000, 60_000)):
        ts = regular(20, old)
        ts += regular(10, new, ts[-1] + new)
        est = [e for _, _, e in _single(ts)]
        # Fix 20 is the first at the new rate; its gap and four more make five of nine.
        assert est[20:25] == [old] * 5 and est[25:] == [new] * 5


def test_duplicates_do_not_count():
    ts = regular(15, 20_000)
    with_dups = sorted(ts + ts[::3])
    assert _single(with_dups) == _single(ts)


def test_a_long_silence_is_not_its_own_excuse():
    # The gap before a fix is judged by the interval known before it: a two-hour silence estimates 30 s.
    ts = regular(12, 30_000)
    ts.append(ts[-1] + 7_200_000)
    assert _single(ts)[-1][2] == 30_000


def test_window_is_nine_gaps_and_state_grows_with_officers():
    assert GAP_WINDOW == 9
    state, est = estimate_intervals(empty_interval_state(), [1_000], [NO_TS_MS], [T0])
    assert state.gaps_ms.shape == (1_001, GAP_WINDOW) and est.tolist() == [0]
    assert current_intervals(state, [5, 1_000]).tolist() == [0, 0]


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ValueError, match="earlier than ts_ms"):
        estimate_intervals(empty_interval_state(), [0], [T0], [T0])
    with pytest.raises(ValueError, match="IntervalState"):
        estimate_intervals((np.zeros((1, 9)), np.zeros(1)), [0], [NO_TS_MS], [T0])
    with pytest.raises(ValueError, match="shape"):
        estimate_intervals(empty_interval_state()._replace(gaps_ms=np.zeros((0, 4), np.int32)), [], [], [])
