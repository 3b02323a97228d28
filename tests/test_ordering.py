"""order_fixes against the plain-Python reference, batch-split invariance and
named scenarios."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.ordering import (
    NO_TS_MS,
    REJECT_DUPLICATE,
    REJECT_LATE,
    REJECT_REASONS,
    REJECT_SPEED,
    empty_ordering_state,
    order_fixes,
)
from tests.reference.ordering import ReferenceOrderer, random_stream, reference_order

T0 = 1_700_000_000_000
PARAMS = dict(reorder_window_s=30, max_speed_mps=10, max_gap_s=300)


def run(fixes, *, flush=True, **params):
    """fixes: (officer, ts_s, x_m, y_m); rows are 1-based positions."""
    params = {**PARAMS, **params}
    o, t, x, y = (np.array(c) for c in zip(*fixes))
    rows = np.arange(1, len(fixes) + 1)
    _, rel, rej = order_fixes(
        empty_ordering_state(), o, T0 + (t * 1000).astype(np.int64), x, y, rows,
        flush=flush, **params,
    )  # fmt: skip
    rejected = {int(r): REJECT_REASONS[int(c)] for r, c in zip(rej.row, rej.reason)}
    return rel.row.tolist(), rejected


# Streams for hypothesis ------------------------------------------------------

STEP_MS = [0, 1, 1000, 5000, 15000, 45000, 400000]
DELAY_MS = [0, 0, 0, 1000, 8000, 40000, 300000]
MOVE = st.one_of(
    st.tuples(st.integers(-60, 60), st.integers(-60, 60)),
    st.sampled_from(["teleport", "nan", "same"]),
)


@st.composite
def fix_streams(draw, max_fixes=50):
    """Fixes of up to four interleaved officers in arrival order: steps of 0
    (duplicates), gaps beyond max_gap, teleports, NaN, delays within and
    beyond the reorder window."""
    n_officers = draw(st.integers(1, 4))
    specs = draw(st.lists(
        st.tuples(st.integers(0, n_officers - 1), st.sampled_from(STEP_MS), MOVE,
                  st.sampled_from(DELAY_MS)),
        max_size=max_fixes,
    ))  # fmt: skip
    pos = {o: [float(o * 1000), 0.0, T0 + o * 7000] for o in range(n_officers)}
    fixes = []
    for i, (o, step, move, delay) in enumerate(specs):
        p = pos[o]
        p[2] += step
        if move == "teleport":
            p[0] += 20_000.0
        elif move == "nan":
            p[0] = math.nan
        elif move != "same":
            p[0] = (0.0 if math.isnan(p[0]) else p[0]) + move[0]
            p[1] += move[1]
        fixes.append((p[2] + delay, i, o, p[2], p[0], p[1]))
    fixes.sort()  # arrival order: event time plus network delay
    cols = list(zip(*fixes)) or [()] * 6
    _, row, o, t, x, y = (np.array(c) for c in cols)
    return (o.astype(np.int64), t.astype(np.int64), x.astype(np.float64),
            y.astype(np.float64), row.astype(np.int64))


ORDER_PARAMS = st.fixed_dictionaries(dict(
    reorder_window_s=st.sampled_from([0, 2, 10, 30.5, 600]),
    max_speed_mps=st.sampled_from([3.0, 10.0, 50.0, math.inf]),
    max_gap_s=st.sampled_from([0, 30, 120, 1000]),
    reanchor_after=st.sampled_from([1, 2, 3, 5]),
))  # fmt: skip


def by_officer(released):
    """(officer, ts, row) in release order, stably grouped by officer."""
    return sorted(((int(o), int(t), int(r)) for o, t, *_, r in released), key=lambda f: f[0])


def run_batches(stream, cuts, params, *, flush_each=False, inplace=False):
    """order_fixes over the stream cut at ``cuts``; flush after the last batch
    (and after every batch when ``flush_each``)."""
    o, t, x, y, r = stream
    bounds = [0, *sorted(cuts), len(o)]
    state = empty_ordering_state()
    released, rejected = [], []
    last_accepted: dict[int, int] = {}
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        last = k == len(bounds) - 2
        state, rel, rej = order_fixes(
            state, o[a:b], t[a:b], x[a:b], y[a:b], r[a:b],
            flush=last or flush_each, inplace=inplace, **params,
        )  # fmt: skip
        assert np.all(np.diff(rel.officer) >= 0), "officers not grouped"
        for oo in np.unique(rel.officer):
            assert np.all(np.diff(rel.ts_ms[rel.officer == oo]) > 0)
        # prev_ts_ms is the officer's previous accepted fix, across batches.
        for oo, ts, prev in zip(rel.officer.tolist(), rel.ts_ms.tolist(), rel.prev_ts_ms.tolist()):
            assert prev == last_accepted.get(oo, NO_TS_MS)
            last_accepted[oo] = ts
        released += zip(rel.officer, rel.ts_ms, rel.x_m, rel.y_m, rel.row)
        rejected += [(int(a), REJECT_REASONS[int(c)]) for a, c in zip(rej.row, rej.reason)]
    assert state.pending_officer.shape == (0,)
    return released, sorted(rejected)


def check_coordinates(released, stream):
    """Released x, y are the input's for that row (NaN included)."""
    if not released:
        return
    where = {int(r): i for i, r in enumerate(stream[4])}
    idx = [where[int(f[4])] for f in released]
    np.testing.assert_array_equal([f[2] for f in released], stream[2][idx])
    np.testing.assert_array_equal([f[3] for f in released], stream[3][idx])


@settings(max_examples=500, deadline=None)
@given(stream=fix_streams(), params=ORDER_PARAMS)
def test_order_fixes_matches_reference(stream, params):
    released, rejected = run_batches(stream, [], params)
    ref_rel, ref_rej = reference_order(*stream, **params)
    assert by_officer(released) == by_officer(ref_rel)
    assert rejected == sorted(ref_rej)
    check_coordinates(released, stream)


@settings(max_examples=300, deadline=None)
@given(stream=fix_streams(), params=ORDER_PARAMS, data=st.data())
def test_order_fixes_batch_split_invariance(stream, params, data):
    cuts = data.draw(st.lists(st.integers(0, len(stream[0])), max_size=6))
    inplace = data.draw(st.booleans())
    whole = run_batches(stream, [], params)
    split = run_batches(stream, cuts, params, inplace=inplace)
    assert by_officer(split[0]) == by_officer(whole[0])
    assert split[1] == whole[1]


@settings(max_examples=100, deadline=None)
@given(stream=fix_streams(), params=ORDER_PARAMS, data=st.data())
def test_flush_between_batches_matches_reference(stream, params, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream[0])), max_size=4)))
    released, rejected = run_batches(stream, cuts, params, flush_each=True)
    ref = ReferenceOrderer(**params)
    ref_rel, ref_rej = [], []
    bounds = [0, *cuts, len(stream[0])]
    for a, b in zip(bounds[:-1], bounds[1:]):
        for o, t, x, y, r in zip(*(c[a:b] for c in stream)):
            rel, rej = ref.push(int(o), int(t), float(x), float(y), int(r))
            ref_rel += rel
            ref_rej += rej
        rel, rej = ref.flush()
        ref_rel += rel
        ref_rej += rej
    assert by_officer(released) == by_officer(ref_rel)
    assert rejected == sorted(ref_rej)


@settings(max_examples=200, deadline=None)
@given(stream=fix_streams(), params=ORDER_PARAMS, data=st.data())
def test_flush_of_silent_officers_matches_reference(stream, params, data):
    """``flush_before_ms`` between batches releases exactly the pending fixes of the officers whose newest
    fix is older than it, as the reference's partial flush does; the rest wait as before."""
    n = len(stream[0])
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    lag_ms = data.draw(st.sampled_from([0, 1000, 30_000, 300_000]))
    ref = ReferenceOrderer(**params)
    state = empty_ordering_state()
    released, rejected, ref_rel, ref_rej = [], [], [], []
    bounds = [0, *cuts, n]
    newest = None
    for a, b in zip(bounds[:-1], bounds[1:]):
        o, t, x, y, r = (c[a:b] for c in stream)
        if b > a:
            newest = int(t.max()) if newest is None else max(newest, int(t.max()))
        before = None if newest is None else newest - lag_ms
        state, rel, rej = order_fixes(state, o, t, x, y, r, flush_before_ms=before, **params)
        released += zip(rel.officer, rel.ts_ms, rel.x_m, rel.y_m, rel.row)
        rejected += [(int(q), REJECT_REASONS[int(c)]) for q, c in zip(rej.row, rej.reason)]
        for oo, tt, xx, yy, rr in zip(o, t, x, y, r):
            rel_, rej_ = ref.push(int(oo), int(tt), float(xx), float(yy), int(rr))
            ref_rel += rel_
            ref_rej += rej_
        if before is not None:
            rel_, rej_ = ref.flush(before)
            ref_rel += rel_
            ref_rej += rej_
        # What is still pending belongs to officers heard from at or after the cut.
        if before is not None and state.pending_officer.size:
            assert np.all(state.max_seen_ts_ms[state.pending_officer] >= before)
    assert by_officer(released) == by_officer(ref_rel)
    assert sorted(rejected) == sorted(ref_rej)


def test_flush_before_releases_only_silent_officers():
    # Officer 0 last heard at 100 s, officer 1 at 200 s; window 30 s keeps both pending.
    state, rel, _ = order_fixes(empty_ordering_state(), [0, 1], [T0 + 100_000, T0 + 200_000], [0, 0], [0, 0],
                                [1, 2], **PARAMS)
    assert rel.row.size == 0
    state, rel, _ = order_fixes(state, [], [], [], [], [], flush_before_ms=T0 + 150_000, **PARAMS)
    assert rel.row.tolist() == [1]
    assert state.pending_row.tolist() == [2]
    # Officer 0's buffer is empty now: a fix older than the one released is late.
    _, _, rej = order_fixes(state, [0], [T0 + 90_000], [0], [0], [3], **PARAMS)
    assert [REJECT_REASONS[int(c)] for c in rej.reason] == ["late"]


def test_seeded_stream_matches_reference():
    stream = random_stream(7, 20_000, 50, late_share=0.05, dup_share=0.02, teleport_share=0.01)
    params = dict(reorder_window_s=60, max_speed_mps=8, max_gap_s=600)
    released, rejected = run_batches(stream, [5_000, 5_001, 12_345], params)
    ref_rel, ref_rej = reference_order(*stream, **params)
    assert by_officer(released) == by_officer(ref_rel)
    assert rejected == sorted(ref_rej)
    assert {r for _, r in rejected} == {"duplicate", "late", "impossible_speed"}


# Named scenarios --------------------------------------------------------------


def test_late_fix_rejected():
    # The 100 s fix is released once 150 s arrives (window 30 s); 60 s is late.
    released, rejected = run([(0, 100, 0, 0), (0, 150, 10, 0), (0, 60, 0, 0)])
    assert released == [1, 2]
    assert rejected == {3: "late"}


def test_out_of_order_within_window_is_reordered():
    released, rejected = run([(0, 100, 0, 0), (0, 120, 20, 0), (0, 110, 10, 0)])
    assert released == [1, 3, 2]
    assert rejected == {}


def test_duplicate_dropped():
    # Same ts twice while pending, and again after release: the first wins.
    fixes = [(0, 100, 0, 0), (0, 100, 5, 0), (0, 200, 0, 0), (0, 100, 9, 0), (1, 100, 0, 0)]
    released, rejected = run(fixes)
    assert released == [1, 3, 5]
    assert rejected == {2: "duplicate", 4: "duplicate"}


def test_duplicate_of_released_fix_is_duplicate_not_late():
    released, rejected = run([(0, 100, 0, 0), (0, 100, 0, 0)], reorder_window_s=0)
    assert released == [1]
    assert rejected == {2: "duplicate"}


def test_impossible_speed_rejected():
    # 2 km in 10 s is 200 m/s; the next fix is judged against the last
    # accepted one (row 1), so the track goes on.
    fixes = [(0, 0, 0, 0), (0, 10, 2000, 0), (0, 20, 50, 0), (0, 30, 2050, 0)]
    released, rejected = run(fixes)
    assert released == [1, 3]
    assert rejected == {2: "impossible_speed", 4: "impossible_speed"}


def test_speed_limit_is_inclusive():
    # Exactly max_speed (10 m/s) is plausible.
    released, rejected = run([(0, 0, 0, 0), (0, 10, 60, 80)])
    assert released == [1, 2] and rejected == {}


# A walk in Nottingham (EPSG:27700) and a fix in London, 176 km away.
NOTTINGHAM = (457_000.0, 340_000.0)
LONDON = (530_000.0, 180_000.0)


def walk(t0_s, n, start=NOTTINGHAM, officer=0, step_s=15, step_m=20.0):
    return [(officer, t0_s + k * step_s, start[0] + k * step_m, start[1]) for k in range(n)]


def test_fix_after_gap_is_speed_checked():
    # 220 s of silence (more than max_gap_s), then one wrong fix in London:
    # it is rejected, and the track goes on from the last good fix.
    fixes = walk(0, 4) + [(0, 265, *LONDON)] + walk(280, 5, start=(457_100.0, 340_000.0))
    released, rejected = run(fixes, max_gap_s=180)
    assert rejected == {5: "impossible_speed"}
    assert released == [1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_long_gap_allows_a_longer_distance():
    # 50 km in 5001 s is 10 m/s or less: plausible after the silence.
    released, rejected = run([(0, 0, 0, 0), (0, 5001, 50_000, 0)], max_gap_s=300)
    assert released == [1, 2] and rejected == {}


@pytest.mark.parametrize("reanchor_after", [1, 2, 3, 5])
def test_bad_first_fix_is_recovered_by_reanchoring(reanchor_after):
    # The first fix (London) has no anchor to be checked against; the good
    # Nottingham fixes after it are rejected until reanchor_after of them in
    # a row, each plausible from the one before, move the anchor.
    fixes = [(0, 0, *LONDON)] + walk(15, 8)
    released, rejected = run(fixes, reanchor_after=reanchor_after)
    first_good = 1 + reanchor_after
    assert rejected == {r: "impossible_speed" for r in range(2, first_good)}
    assert released == [1, *range(first_good, 10)]


def test_bad_anchor_after_a_gap_is_recovered_by_reanchoring():
    # The anchor itself can be the wrong one (here every fix after it comes
    # from London, consistent with each other): three in a row move it.
    fixes = walk(0, 3) + walk(100, 5, start=LONDON)
    released, rejected = run(fixes)
    assert rejected == {4: "impossible_speed", 5: "impossible_speed"}
    assert released == [1, 2, 3, 6, 7, 8]


def test_reanchor_needs_consistent_fixes():
    # Three (and more) rejected fixes far from each other do not re-anchor;
    # the run restarts at each inconsistent one, so only three in a row that
    # are plausible from each other move the anchor.
    fixes = [(0, 0, 0, 0), (0, 10, 5000, 0), (0, 20, -5000, 0), (0, 30, 5000, 0),
             (0, 40, -5000, 0), (0, 50, -5000, 50), (0, 60, -5000, 100), (0, 70, -5000, 150)]
    released, rejected = run(fixes)
    assert rejected == {r: "impossible_speed" for r in range(2, 7)}
    assert released == [1, 7, 8]


def test_reanchor_run_is_reset_by_an_accepted_fix():
    # Rejects 2, 4, 5 are consistent with each other but 3, accepted, lies
    # between them: 2 and 4 are not consecutive, so 6 is the third in a row.
    fixes = [(0, 0, 0, 0), (0, 10, 5000, 0), (0, 20, 50, 0), (0, 30, 5000, 0),
             (0, 40, 5050, 0), (0, 50, 5100, 0)]
    released, rejected = run(fixes)
    assert rejected == {2: "impossible_speed", 4: "impossible_speed", 5: "impossible_speed"}
    assert released == [1, 3, 6]


def test_reanchor_run_carries_over_between_batches():
    fixes = [(0, 0, *LONDON)] + walk(15, 4)
    o, t, x, y = (np.array(c) for c in zip(*fixes))
    ts = T0 + t * 1000
    state, rows = empty_ordering_state(), []
    for k in range(len(fixes)):
        state, rel, _ = order_fixes(state, o[k:k + 1], ts[k:k + 1], x[k:k + 1], y[k:k + 1],
                                      [k + 1], flush=True, reorder_window_s=0, max_speed_mps=10)
        rows += rel.row.tolist()
        if k == 2:  # two rejects so far, the last one at 30 s
            assert state.speed_rejects[0] == 2
            assert state.released_ts_ms[0] == T0 + 30_000
            assert (state.rejected_x_m[0], state.rejected_y_m[0]) == (NOTTINGHAM[0] + 20, NOTTINGHAM[1])
    assert rows == [1, 4, 5]
    assert state.speed_rejects[0] == 0 and state.accepted_ts_ms[0] == T0 + 60_000


def test_per_officer_state_is_57_bytes():
    state = empty_ordering_state(10)
    per_officer = [a for a in state if a.shape == (10,)]
    assert sum(a.itemsize for a in per_officer) == 57
    assert state.speed_rejects.dtype == np.int8 and state.speed_rejects.tolist() == [0] * 10


def test_speed_still_checked_at_exactly_max_gap():
    released, rejected = run([(0, 0, 0, 0), (0, 300, 50_000, 0)], max_gap_s=300)
    assert released == [1] and rejected == {2: "impossible_speed"}


def test_nan_coordinates_never_rejected_for_speed():
    fixes = [(0, 0, 0, 0), (0, 10, math.nan, 0), (0, 20, 5000, 0)]
    released, rejected = run(fixes)
    assert released == [1, 2, 3] and rejected == {}


def test_zero_window_releases_at_once_and_older_is_late():
    params = dict(PARAMS, reorder_window_s=0)
    state, rel, rej = order_fixes(empty_ordering_state(), [0, 0], [T0 + 5000, T0 + 4000],
                                  [0, 0], [0, 0], [1, 2], **params)
    assert rel.row.tolist() == [1]
    assert rej.row.tolist() == [2] and rej.reason.tolist() == [REJECT_LATE]
    assert state.pending_officer.shape == (0,)


def test_pending_fixes_wait_for_the_window_or_a_flush():
    state, rel, _ = order_fixes(empty_ordering_state(), [3, 3], [T0, T0 + 10_000],
                                [0, 1], [0, 0], [1, 2], **PARAMS)
    assert rel.row.shape == (0,)
    assert state.pending_row.tolist() == [1, 2]
    assert state.max_seen_ts_ms[3] == T0 + 10_000
    assert state.released_ts_ms[3] == NO_TS_MS
    state, rel, _ = order_fixes(state, [], [], [], [], [], flush=True, **PARAMS)
    assert rel.row.tolist() == [1, 2] and rel.officer.tolist() == [3, 3]
    assert state.released_ts_ms[3] == T0 + 10_000 and state.accepted_x_m[3] == 1


def test_state_grows_for_new_officers_and_keeps_old_ones():
    state, *_ = order_fixes(empty_ordering_state(), [0], [T0], [0], [0], [1], flush=True, **PARAMS)
    state, *_ = order_fixes(state, [5000], [T0], [0], [0], [2], flush=True, **PARAMS)
    assert state.released_ts_ms.shape[0] >= 5001
    assert state.released_ts_ms[0] == T0 and state.released_ts_ms[5000] == T0
    assert state.released_ts_ms[1] == NO_TS_MS


def test_input_state_is_not_modified_unless_inplace():
    state, *_ = order_fixes(empty_ordering_state(2), [0], [T0], [0], [0], [1], flush=True, **PARAMS)
    before = [a.copy() for a in state]
    order_fixes(state, [0], [T0 + 1000], [1], [0], [2], flush=True, **PARAMS)
    for a, b in zip(before, state):
        np.testing.assert_array_equal(a, b)
    order_fixes(state, [0], [T0 + 1000], [1], [0], [2], flush=True, inplace=True, **PARAMS)
    assert state.released_ts_ms[0] == T0 + 1000


def test_reason_codes():
    assert REJECT_REASONS == {REJECT_DUPLICATE: "duplicate", REJECT_LATE: "late",
                              REJECT_SPEED: "impossible_speed"}
    _, _, rej = order_fixes(empty_ordering_state(), [0, 0], [T0, T0], [0, 0], [0, 0], [1, 2],
                            **PARAMS)
    assert rej.reason.dtype == np.int8 and rej.row.dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(officer=[-1]), "officer"),
        (dict(officer=[0.5]), "integer"),
        (dict(ts_ms=[0, 1]), "length"),
        (dict(ts_ms=[2**63 - 1]), "2\\*\\*62"),
        (dict(reorder_window_s=-1), "reorder_window_s"),
        (dict(max_gap_s=math.nan), "max_gap_s"),
        (dict(max_speed_mps=0), "max_speed_mps"),
        (dict(reanchor_after=0), "reanchor_after"),
        (dict(reanchor_after=128), "reanchor_after"),
        (dict(reanchor_after=2.5), "reanchor_after"),
    ],
)
def test_bad_input_raises_value_error(kwargs, message):
    args = dict(officer=[0], ts_ms=[T0], x_m=[0.0], y_m=[0.0], row=[1], **PARAMS)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        order_fixes(empty_ordering_state(), **args)


@settings(max_examples=100, deadline=None)
@given(stream=fix_streams(), params=ORDER_PARAMS, data=st.data())
def test_each_fix_keeps_its_stated_accuracy_through_the_buffer(stream, params, data):
    """The exit margin follows a fix's stated accuracy, so the buffer carries it to the fix's release."""
    o, t, x, y, r = stream
    acc = np.where(r % 3 == 0, np.nan, (r % 50).astype(np.float64))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(o)), max_size=4)))
    bounds = [0, *cuts, len(o)]
    state = empty_ordering_state()
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        state, rel, _ = order_fixes(state, o[a:b], t[a:b], x[a:b], y[a:b], r[a:b], accuracy_m=acc[a:b],
                                    flush=k == len(bounds) - 2, **params)
        want = np.where(rel.row % 3 == 0, np.nan, (rel.row % 50).astype(np.float64))
        np.testing.assert_array_equal(rel.accuracy_m, want)
