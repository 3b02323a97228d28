"""Each officer's reporting interval, estimated from the gaps between his accepted fixes.

Radios report every 5 s to several minutes, set per force and per device, and
a force's data mixes them. Rules that scale with the evidence (a gap limit, an
exit grace) need each officer's own interval. The estimate is the median of
his last ``GAP_WINDOW`` gaps between accepted fixes (the lower median while
fewer are known): a dropped report doubles one gap, a burst after a
reconnection shortens a few, and neither moves a median of nine while they
are a minority; after a change of rate, five gaps at the new rate carry it.
Duplicates never count (the ordering kernel drops them before release).

The state is two arrays per officer, so it is checkpointed with the rest and
any cut of the stream into batches gives the same estimates.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from kernels._checks import as_1d, check_codes, check_count
from kernels._config import JIT_OPTIONS
from kernels.ordering import NO_TS_MS
from kernels.ordering_state import MAX_OFFICERS

GAP_WINDOW = 9  # gaps kept per officer: the median of nine ignores four odd ones
MIN_GAPS = 3  # fewer known gaps than this: no estimate yet (0)
_MAX_GAP_MS = np.iinfo(np.int32).max  # gaps are kept as int32 ms (24 days); longer ones are clipped


class IntervalState(NamedTuple):
    """The last gaps of every officer (indexed by officer code; grows on demand).

    gaps_ms : int32 (n_officers, GAP_WINDOW)
        A ring of the officer's last gaps between accepted fixes, ms.
    n_gaps : int32 (n_officers,)
        Gaps seen so far; the next goes to ``n_gaps % GAP_WINDOW``.
    """

    gaps_ms: np.ndarray
    n_gaps: np.ndarray


def empty_interval_state(n_officers: int = 0) -> IntervalState:
    """No gaps known for ``n_officers`` officers."""
    n = check_count(n_officers, "n_officers", 0, MAX_OFFICERS)
    return IntervalState(np.zeros((n, GAP_WINDOW), np.int32), np.zeros(n, np.int32))


@njit(**JIT_OPTIONS)
def _median_of(gaps, o, n, scratch):
    """The lower median of the officer's ``min(n, GAP_WINDOW)`` kept gaps, 0 below ``MIN_GAPS``."""
    k = min(n, GAP_WINDOW)
    if k < MIN_GAPS:
        return 0
    for i in range(k):  # insertion sort of at most nine values
        v = gaps[o, i]
        j = i
        while j > 0 and scratch[j - 1] > v:
            scratch[j] = scratch[j - 1]
            j -= 1
        scratch[j] = v
    return scratch[(k - 1) // 2]


@njit("void(int32[:, ::1], int32[::1], int32[::1], int64[::1], int64[::1], int64[::1])", **JIT_OPTIONS)
def _estimate_kernel(gaps, n_gaps, officer, prev_ts, ts, out):
    scratch = np.empty(GAP_WINDOW, np.int32)
    for i in range(officer.shape[0]):
        o = officer[i]
        out[i] = _median_of(gaps, o, n_gaps[o], scratch)
        if prev_ts[i] != NO_TS_MS:
            gaps[o, n_gaps[o] % GAP_WINDOW] = min(ts[i] - prev_ts[i], _MAX_GAP_MS)
            n_gaps[o] += 1


@njit("void(int32[:, ::1], int32[::1], int32[::1], int64[::1])", **JIT_OPTIONS)
def _current_kernel(gaps, n_gaps, officer, out):
    scratch = np.empty(GAP_WINDOW, np.int32)
    for i in range(officer.shape[0]):
        o = officer[i]
        out[i] = _median_of(gaps, o, n_gaps[o], scratch) if o < n_gaps.shape[0] else 0


def _grown(state: IntervalState, n_need: int, inplace: bool) -> IntervalState:
    gaps = np.ascontiguousarray(state.gaps_ms, np.int32)
    n_gaps = np.ascontiguousarray(state.n_gaps, np.int32)
    n_have = n_gaps.shape[0]
    if n_need <= n_have:
        return IntervalState(gaps, n_gaps) if inplace else IntervalState(gaps.copy(), n_gaps.copy())
    # Geometric growth, so streaming new officers stays cheap.
    grown = empty_interval_state(max(n_need, n_have + n_have // 2))
    grown.gaps_ms[:n_have] = gaps
    grown.n_gaps[:n_have] = n_gaps
    return grown


def _check_state(state: IntervalState) -> None:
    if not isinstance(state, IntervalState):
        raise ValueError("state must be an IntervalState (see empty_interval_state)")
    n = state.n_gaps.shape[0]
    if state.gaps_ms.shape != (n, GAP_WINDOW):
        raise ValueError(f"state.gaps_ms must have shape ({n}, {GAP_WINDOW}), got {state.gaps_ms.shape}")


def estimate_intervals(state: IntervalState, officer, prev_ts_ms, ts_ms, *,
                       inplace: bool = False) -> tuple[IntervalState, np.ndarray]:
    """Each released fix's reporting-interval estimate, then its gap into the officer's window.

    Parameters
    ----------
    state : IntervalState
        From :func:`empty_interval_state` or the previous call.
    officer : int (n,)
        Dense officer codes, each officer's fixes in ts order (as
        :func:`kernels.ordering.order_fixes` releases them).
    prev_ts_ms : int64 (n,)
        ts of the officer's previous accepted fix, ``NO_TS_MS`` for none.
    ts_ms : int64 (n,)
        Event time of each fix, epoch ms, later than ``prev_ts_ms``.
    inplace : bool
        Update the state's arrays in place (for a caller that drops the old state).

    Returns
    -------
    new_state : IntervalState
    interval_ms : int64 (n,)
        The officer's interval estimate from the gaps before each fix (its
        own gap not included, so a long silence does not excuse itself), ms;
        0 while fewer than ``MIN_GAPS`` gaps are known.
    """
    _check_state(state)
    officer = np.asarray(officer)
    n = officer.shape[0] if officer.ndim == 1 else -1
    off = check_codes(as_1d(officer, np.int64, "officer"), "officer")
    prev = as_1d(prev_ts_ms, np.int64, "prev_ts_ms", n)
    ts = as_1d(ts_ms, np.int64, "ts_ms", n)
    if n and np.any((prev != NO_TS_MS) & (prev >= ts)):
        raise ValueError("prev_ts_ms must be earlier than ts_ms (NO_TS_MS for none)")
    new = _grown(state, int(off.max()) + 1 if n else 0, inplace)
    out = np.empty(max(n, 0), np.int64)
    _estimate_kernel(new.gaps_ms, new.n_gaps, off.astype(np.int32), prev, ts, out)
    return new, out


def current_intervals(state: IntervalState, officer) -> np.ndarray:
    """The officers' interval estimates now (int64 ms, 0 when unknown), e.g. for an officer gone silent."""
    _check_state(state)
    off = check_codes(as_1d(officer, np.int64, "officer"), "officer").astype(np.int32)
    out = np.empty(off.shape[0], np.int64)
    _current_kernel(np.ascontiguousarray(state.gaps_ms, np.int32), np.ascontiguousarray(state.n_gaps, np.int32),
                    off, out)
    return out


def estimate_released(state: IntervalState, released) -> tuple[IntervalState, np.ndarray]:
    """:func:`estimate_intervals` in place for fixes straight from :func:`kernels.ordering.order_fixes`
    (``released``: a :class:`kernels.ordering.ReleasedFixes`), without re-checking them."""
    n = released.officer.shape[0]
    new = _grown(state, int(released.officer.max()) + 1 if n else 0, inplace=True)
    out = np.empty(n, np.int64)
    _estimate_kernel(new.gaps_ms, new.n_gaps, np.ascontiguousarray(released.officer, np.int32),
                     np.ascontiguousarray(released.prev_ts_ms, np.int64), np.ascontiguousarray(released.ts_ms, np.int64),
                     out)
    return new, out
