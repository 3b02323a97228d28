"""The reorder buffer's types: what :func:`kernels.ordering.order_fixes` keeps between batches and
what it hands on (released and rejected fixes)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kernels import reasons
from kernels._checks import check_count

# "No timestamp yet". Input times must stay well inside int64 (see check_ts).
NO_TS_MS = np.iinfo(np.int64).min
MAX_TS_MS = np.iinfo(np.int64).max

# One code table for every stage (kernels/reasons.py), so the replay and the
# dead-letter topic report the same numbers whichever stage rejected a fix.
REJECT_DUPLICATE = reasons.DUPLICATE
REJECT_LATE = reasons.LATE
REJECT_SPEED = reasons.IMPOSSIBLE_SPEED
REJECT_REASONS = {REJECT_DUPLICATE: "duplicate", REJECT_LATE: "late",
                  REJECT_SPEED: "impossible_speed"}

MAX_OFFICERS = np.iinfo(np.int32).max - 1  # officer codes are int32

# OrderingState's per-officer fields (released_ts_ms ... rejected_y_m).
OFFICER_DTYPES = (np.int64, np.int64, np.float64, np.float64, np.int64, np.int8, np.float64, np.float64)
OFFICER_FILL = (NO_TS_MS, NO_TS_MS, np.nan, np.nan, NO_TS_MS, 0, np.nan, np.nan)
N_PER = len(OFFICER_DTYPES)  # per-officer fields come first in OrderingState
MAX_REANCHOR = np.iinfo(np.int8).max
# officer, ts_ms, x_m, y_m, row, accuracy_m: the pending buffer and a batch; released fixes add prev_ts_ms.
FIX_DTYPES = (np.int32, np.int64, np.float64, np.float64, np.int64, np.float64)
REL_DTYPES = FIX_DTYPES + (np.int64,)
REJ_DTYPES = (np.int64, np.int8)


class OrderingState(NamedTuple):
    """Everything :func:`order_fixes` remembers between batches.

    Per officer (indexed by officer code; length grows on demand):

    released_ts_ms : int64 (n_officers,)
        ts of the officer's last released fix, ``NO_TS_MS`` when none.
    accepted_ts_ms : int64 (n_officers,)
        ts of the last accepted fix (the speed check's anchor), ``NO_TS_MS``.
    accepted_x_m, accepted_y_m : float64 (n_officers,)
        Metric coordinates of the last accepted fix, NaN when none.
    max_seen_ts_ms : int64 (n_officers,)
        Largest ts ever put in the buffer, ``NO_TS_MS`` when none.
    speed_rejects : int8 (n_officers,)
        Consecutive released fixes rejected for speed since the last accepted
        one, as a consistent run (re-anchoring); < ``reanchor_after``.
    rejected_x_m, rejected_y_m : float64 (n_officers,)
        Coordinates of the last of them (its ts is ``released_ts_ms``); NaN
        before the first reject. 57 bytes per officer in all.

    Pending reorder buffer, flat, sorted by (officer, ts):

    pending_officer : int32 (n_pending,)
    pending_ts_ms : int64 (n_pending,)
    pending_x_m, pending_y_m : float64 (n_pending,)
    pending_row : int64 (n_pending,)
        The caller's id of the fix (input line number in a replay).
    pending_accuracy_m : float64 (n_pending,)
        The fix's stated accuracy, metres; NaN when it gave none.
    """

    released_ts_ms: np.ndarray
    accepted_ts_ms: np.ndarray
    accepted_x_m: np.ndarray
    accepted_y_m: np.ndarray
    max_seen_ts_ms: np.ndarray
    speed_rejects: np.ndarray
    rejected_x_m: np.ndarray
    rejected_y_m: np.ndarray
    pending_officer: np.ndarray
    pending_ts_ms: np.ndarray
    pending_x_m: np.ndarray
    pending_y_m: np.ndarray
    pending_row: np.ndarray
    pending_accuracy_m: np.ndarray


class ReleasedFixes(NamedTuple):
    """Accepted fixes, each officer's contiguous and in ts order.

    officer : int32 (n,) ; ts_ms : int64 (n,) epoch ms ;
    x_m, y_m : float64 (n,) metres ; row : int64 (n,) caller's id ;
    accuracy_m : float64 (n,) stated accuracy, metres (NaN: none) ;
    prev_ts_ms : int64 (n,) ts of the officer's previous accepted fix,
    ``NO_TS_MS`` for its first (visit boundaries interpolate towards it).
    Officers appear in ascending code order.
    """

    officer: np.ndarray
    ts_ms: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    row: np.ndarray
    accuracy_m: np.ndarray
    prev_ts_ms: np.ndarray


class RejectedFixes(NamedTuple):
    """row : int64 (n,) caller's id ; reason : int8 (n,) ``REJECT_*`` code."""

    row: np.ndarray
    reason: np.ndarray


def empty_ordering_state(n_officers: int = 0) -> OrderingState:
    """A state with room for ``n_officers`` officers and nothing pending."""
    n = check_count(n_officers, "n_officers", 0, MAX_OFFICERS)
    per_officer = (np.full(n, v, d) for v, d in zip(OFFICER_FILL, OFFICER_DTYPES))
    return OrderingState(*per_officer, *alloc(0, FIX_DTYPES))


def alloc(n: int, dtypes) -> tuple[np.ndarray, ...]:
    return tuple(np.empty(n, d) for d in dtypes)


def per_officer_arrays(state: OrderingState, n_need: int, inplace: bool) -> list[np.ndarray]:
    """The per-officer arrays with room for ``n_need`` officers (copies unless
    ``inplace``; growth is geometric so streaming new officers stays cheap)."""
    arrays = [np.ascontiguousarray(a, dtype=d) for a, d in zip(state[:N_PER], OFFICER_DTYPES)]
    n_have = arrays[0].shape[0]
    if n_need <= n_have:
        return arrays if inplace else [a.copy() for a in arrays]
    n_new = max(n_need, n_have + n_have // 2)
    grown = empty_ordering_state(n_new)
    for new, old in zip(grown[:N_PER], arrays):
        new[:n_have] = old
    return list(grown[:N_PER])
