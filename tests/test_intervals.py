"""Union of visits per hot spot: kernel against the plain-Python reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.intervals import merge_intervals, union_length_within
from tests.reference.presence import union_length_within as ref_union

interval = st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 3_000))


@settings(max_examples=200, deadline=None)
@given(st.lists(interval, max_size=40), st.lists(st.tuples(st.integers(0, 4), st.integers(-100, 12_000),
                                                           st.integers(0, 8_000)), min_size=1, max_size=10))
def test_union_within_equals_reference(items, windows):
    g = np.array([i[0] for i in items], np.int64)
    s = np.array([i[1] for i in items], np.int64)
    e = s + np.array([i[2] for i in items], np.int64)
    merged = merge_intervals(g, s, e)
    qg = np.array([w[0] for w in windows], np.int64)
    qs = np.array([w[1] for w in windows], np.int64)
    qe = qs + np.array([w[2] for w in windows], np.int64)
    got = union_length_within(merged, qg, qs, qe)
    for k in range(len(windows)):
        want = ref_union([(a, b) for gg, a, b in zip(g, s, e) if gg == qg[k]], int(qs[k]), int(qe[k]))
        assert got[k] == want
    # Invariant: presence never exceeds the sum of officer dwell.
    total = union_length_within(merged, np.arange(4), np.full(4, -1), np.full(4, 10**9))
    assert all(total[k] <= int(np.sum((e - s)[g == k])) for k in range(4))


def test_two_officers_together_count_once():
    merged = merge_intervals(np.array([0, 0]), np.array([0, 0]), np.array([900_000, 900_000]))
    assert union_length_within(merged, np.array([0]), np.array([0]), np.array([10**7]))[0] == 900_000


def test_bad_interval_is_a_clear_error():
    with pytest.raises(ValueError, match="ends before it starts"):
        merge_intervals(np.array([0]), np.array([5]), np.array([1]))
