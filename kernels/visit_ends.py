"""Ending open visits without a fix: at the end of a replay, at a policing day's close, or when an
officer has gone silent.

A visit then ends at its last inside fix, or with midpoint bounds halfway on to the first fix after it
when that fix lies within the officer's gap limit: the bounds the visit kernel would have given it had
the next fix come after a gap. Arrays in, arrays out; plain numpy (no per-fix loop).
"""

from __future__ import annotations

import numpy as np

from kernels._checks import seconds_to_ms
from kernels.ordering import NO_TS_MS
from kernels.visit_state import VisitState, Visits, check_bounds, check_state, sorted_visits


def _per_visit(values, n: int, name: str) -> np.ndarray:
    out = np.broadcast_to(np.asarray(values, np.int64), (n,)).copy()
    if n and out.min() < 0:
        raise ValueError(f"{name} must be >= 0")
    return out


def close_all(state: VisitState, *, bounds: str = "fixes", max_gap_s: float | None = None,
              gap_limit_ms=None, interval_ms=0) -> Visits:
    """Close every open visit at its last inside fix, or with midpoint bounds halfway to the fix after it.

    Parameters
    ----------
    state : VisitState
    bounds : {"fixes", "midpoint"}
    max_gap_s : float, optional
        The gap limit of every visit, seconds (with midpoint bounds, unless ``gap_limit_ms`` is given).
    gap_limit_ms : int64 scalar or (n_open,), optional
        Each visit's officer's gap limit now, ms.
    interval_ms : int64 scalar or (n_open,)
        Each visit's officer's reporting-interval estimate now, ms (0: unknown), reported with the visit.

    Returns
    -------
    Visits
        Sorted by (officer, start_ms, hotspot).
    """
    check_state(state)
    n = state.officer.shape[0]
    if gap_limit_ms is None:
        if max_gap_s is None:
            if check_bounds(bounds):
                raise ValueError("midpoint bounds need max_gap_s or gap_limit_ms")
            gap_limit_ms = 0
        else:
            gap_limit_ms = seconds_to_ms(max_gap_s, "max_gap_s")
    limit = _per_visit(gap_limit_ms, n, "gap_limit_ms")
    last_in = state.last_in_ms
    end = last_in
    if check_bounds(bounds):
        after = state.after_in_ms
        near = (after != NO_TS_MS) & (after - last_in <= limit)
        end = np.where(near, last_in + (after - last_in) // 2, last_in)
    return sorted_visits(Visits(state.officer, state.hotspot, state.start_ms, end, state.n_fixes,
                                 _per_visit(interval_ms, n, "interval_ms"), limit))


def close_stale(state: VisitState, watermark_ms: int, *, max_gap_s: float, bounds: str = "fixes",
                gap_limit_ms=None, interval_ms=0) -> tuple[VisitState, Visits]:
    """Close the visits of officers silent for more than their gap limit before ``watermark_ms``.

    A visit is stale when ``last_seen_ms < watermark_ms - gap limit``, the same test a fix at
    ``watermark_ms`` would apply, so closing early changes nothing as long as no later fix is older
    than the watermark.

    Parameters
    ----------
    state : VisitState
    watermark_ms : int
        Epoch ms that every officer's stream has reached (event time).
    max_gap_s : float
        Seconds: the gap limit of every visit unless ``gap_limit_ms`` is given.
    bounds : {"fixes", "midpoint"}
        As in :func:`kernels.visits.advance_visits`.
    gap_limit_ms, interval_ms : int64 scalar or (n_open,), optional
        Each visit's officer's gap limit and reporting interval now, ms.

    Returns
    -------
    new_state : VisitState
        The visits still open.
    closed : Visits
        The stale visits, sorted by (officer, start_ms, hotspot).
    """
    check_state(state)
    n = state.officer.shape[0]
    limit = _per_visit(seconds_to_ms(max_gap_s, "max_gap_s") if gap_limit_ms is None else gap_limit_ms, n,
                       "gap_limit_ms")
    iv = _per_visit(interval_ms, n, "interval_ms")
    stale = state.last_seen_ms < int(watermark_ms) - limit
    keep = VisitState(*(a[~stale] for a in state))
    gone = VisitState(*(a[stale] for a in state))
    return keep, close_all(gone, bounds=bounds, gap_limit_ms=limit[stale], interval_ms=iv[stale])
