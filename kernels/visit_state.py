"""The visit state machine's types: open visits (the state) and closed visits (the result).

Shared by the kernel that advances visits fix by fix (:mod:`kernels.visits`) and the functions that end
them without a fix (:mod:`kernels.visit_ends`: the end of a replay, a day's close, an officer gone silent).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

BOUNDS = ("fixes", "midpoint")


class VisitState(NamedTuple):
    """Open visits, one row each, sorted by (officer, hotspot).

    officer, hotspot : int32 (n_open,)
        Dense codes.
    start_ms : int64 (n_open,)
        The visit's start: its first inside-polygon fix, or with midpoint
        bounds halfway back to the fix before it.
    last_in_ms : int64 (n_open,)
        ts of the last inside-polygon fix.
    last_seen_ms : int64 (n_open,)
        ts of the officer's last fix while the visit is open.
    out_since_ms : int64 (n_open,)
        ts of the first fix of the current excursion outside the buffer,
        ``NO_TS_MS`` when the officer is not on one.
    after_in_ms : int64 (n_open,)
        ts of the first fix after the last inside fix (where a midpoint end
        lies halfway to), ``NO_TS_MS`` while the last fix is inside.
    n_fixes : int32 (n_open,)
        Inside-polygon fixes so far.
    """

    officer: np.ndarray
    hotspot: np.ndarray
    start_ms: np.ndarray
    last_in_ms: np.ndarray
    last_seen_ms: np.ndarray
    out_since_ms: np.ndarray
    after_in_ms: np.ndarray
    n_fixes: np.ndarray


class Visits(NamedTuple):
    """Closed visits, sorted by (officer, start_ms, hotspot).

    officer, hotspot : int32 (n,) ; start_ms, end_ms : int64 (n,) epoch ms
    (the first and last inside-polygon fix, or the midpoints beyond them) ;
    n_fixes : int32 (n,) >= 1 ; interval_ms : int64 (n,) the officer's
    reporting-interval estimate when the visit closed (0: unknown) ;
    gap_limit_ms : int64 (n,) the gap limit it closed under.
    """

    officer: np.ndarray
    hotspot: np.ndarray
    start_ms: np.ndarray
    end_ms: np.ndarray
    n_fixes: np.ndarray
    interval_ms: np.ndarray
    gap_limit_ms: np.ndarray


STATE_DTYPES = (np.int32, np.int32, np.int64, np.int64, np.int64, np.int64, np.int64, np.int32)
VISIT_DTYPES = (np.int32, np.int32, np.int64, np.int64, np.int32, np.int64, np.int64)


def empty_visit_state() -> VisitState:
    """No open visits."""
    return VisitState(*(np.empty(0, d) for d in STATE_DTYPES))


def empty_visits(n: int = 0) -> Visits:
    return Visits(*(np.empty(n, d) for d in VISIT_DTYPES))


def sorted_visits(v: Visits) -> Visits:
    order = np.lexsort((v.hotspot, v.start_ms, v.officer))
    return Visits(*(a[order] for a in v))


def check_state(state: VisitState) -> None:
    if not isinstance(state, VisitState):
        raise ValueError("state must be a VisitState (see empty_visit_state)")
    n = state.officer.shape[0]
    if any(a.shape != (n,) for a in state):
        raise ValueError("state arrays have inconsistent lengths")


def check_bounds(bounds: str) -> bool:
    if bounds not in BOUNDS:
        raise ValueError(f"bounds must be one of {BOUNDS}, got {bounds!r}")
    return bounds == "midpoint"
