"""Per (officer, hot spot) visit state machine: located fixes in, visits out.

A visit opens on the first fix inside a hot spot's polygon and lasts until

* a fix outside the polygon grown by ``exit_margin_m`` (no pair for that hot
  spot) starts an excursion that lasts ``exit_grace_s`` or more
  (``ts - out_since >= exit_grace``; with 0 the first such fix ends it),
* or a fix back within the buffer ends an excursion that lasted that long
  (``ts - out_since >= exit_grace``): sparse fixes must not hide the time
  away. If that fix is inside the polygon it opens the next visit; a shorter
  excursion is forgiven and the visit goes on,
* or the officer is silent for more than ``max_gap_s`` (silence is not
  presence),

and ends at its last fix inside the polygon itself. With ``bounds="midpoint"``
a visit starts halfway between its first inside fix and the officer's fix
before it, and ends halfway between its last inside fix and the fix after it,
when that neighbour is no more than ``max_gap_s`` away. Fixes in the buffer
ring (pair with ``inside=False``) keep a visit open but never open one. Each
(officer, hot spot) is independent, so overlapping hot spots each get a visit.
The state carries over between calls: any cut of a stream into batches gives
the same visits as one batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._checks import as_1d, check_codes, check_ts, seconds_to_ms
from kernels._config import JIT_OPTIONS
from kernels.ordering import NO_TS_MS
from kernels.visit_kernel import _advance_kernel
from kernels.visit_state import (BOUNDS, VisitState, Visits, STATE_DTYPES, check_bounds, check_state,
                                 empty_visits, sorted_visits, empty_visit_state)
from kernels.visit_ends import close_all, close_stale

__all__ = ["BOUNDS", "VisitState", "Visits", "empty_visit_state", "advance_visits", "advance_released",
           "close_all", "close_stale"]


def advance_visits(
    state: VisitState,
    fix_officer,
    fix_ts_ms,
    pair_fix,
    pair_hotspot,
    pair_inside,
    *,
    max_gap_s: float,
    exit_grace_s: float,
    bounds: str = "fixes",
    fix_prev_ts_ms=None,
    fix_gap_ms=None,
    fix_grace_ms=None,
    fix_interval_ms=None,
) -> tuple[VisitState, Visits]:
    """Advance every officer's open visits over one batch of located fixes.

    Parameters
    ----------
    state : VisitState
        From :func:`empty_visit_state` or the previous call.
    fix_officer : int (n_fix,)
        Dense officer codes; each officer's fixes contiguous (as released by
        :func:`kernels.ordering.order_fixes`).
    fix_ts_ms : int64 (n_fix,)
        Epoch ms, non-decreasing within an officer and not older than the
        officer's open visits from earlier batches.
    pair_fix : int (n_pair,)
        Index into the fixes of each (fix, hot spot) pair: the hot spot's
        polygon grown by ``exit_margin_m`` contains the fix.
    pair_hotspot : int (n_pair,)
        Dense hot spot code. Pairs sorted by (pair_fix, pair_hotspot), unique.
    pair_inside : bool (n_pair,)
        True when the fix lies in the polygon itself.
    max_gap_s : float
        Seconds of silence after which an open visit ends at its last inside
        fix.
    exit_grace_s : float
        Seconds an excursion outside the buffer may last without ending the
        visit, from its first fix outside to the next fix outside or back.
    bounds : {"fixes", "midpoint"}
        Where a visit starts and ends: at its first and last inside fix, or
        halfway to the officer's fix before and after them when that fix is
        no more than ``max_gap_s`` away (the unbiased estimate of the
        crossing; a sparse radio otherwise shortens every visit by about one
        reporting interval).
    fix_prev_ts_ms : int64 (n_fix,), optional
        ts of each fix's predecessor in the officer's stream (across
        batches), ``NO_TS_MS`` for none; required with midpoint bounds
        (:class:`kernels.ordering.ReleasedFixes` carries it).
    fix_gap_ms, fix_grace_ms : int64 (n_fix,), optional
        The gap limit and exit grace at each fix, ms, where they follow the
        officer's reporting interval; by default ``max_gap_s`` and
        ``exit_grace_s`` at every fix.
    fix_interval_ms : int64 (n_fix,), optional
        The reporting interval each fix's thresholds were drawn from,
        reported with the visits it closes (default 0: unknown).

    Returns
    -------
    new_state : VisitState
    closed : Visits
        Visits that closed in this batch, sorted by (officer, start, hotspot).
    """
    check_state(state)
    fix_officer = np.asarray(fix_officer)
    n = fix_officer.shape[0] if fix_officer.ndim == 1 else -1
    off = check_codes(as_1d(fix_officer, np.int64, "fix_officer"), "fix_officer")
    ts = as_1d(fix_ts_ms, np.int64, "fix_ts_ms", n)
    check_ts(ts, "fix_ts_ms")
    pair_fix = np.asarray(pair_fix)
    m = pair_fix.shape[0] if pair_fix.ndim == 1 else -1
    p_fix = as_1d(pair_fix, np.int64, "pair_fix")
    p_hot = check_codes(as_1d(pair_hotspot, np.int64, "pair_hotspot", m), "pair_hotspot")
    p_in = as_1d(pair_inside, np.bool_, "pair_inside", m)
    gap = _per_fix(fix_gap_ms, seconds_to_ms(max_gap_s, "max_gap_s"), n, "fix_gap_ms")
    grace = _per_fix(fix_grace_ms, seconds_to_ms(exit_grace_s, "exit_grace_s"), n, "fix_grace_ms")
    iv = _per_fix(fix_interval_ms, 0, n, "fix_interval_ms")
    midpoint = check_bounds(bounds)
    if fix_prev_ts_ms is None:
        if midpoint:
            raise ValueError("midpoint bounds need fix_prev_ts_ms")
        prev = np.full(max(n, 0), NO_TS_MS, np.int64)
    else:
        prev = as_1d(fix_prev_ts_ms, np.int64, "fix_prev_ts_ms", n)
        if n and np.any(prev > ts):
            raise ValueError("fix_prev_ts_ms must not be later than fix_ts_ms (NO_TS_MS for none)")

    if m and (p_fix.min() < 0 or p_fix.max() >= n):
        raise ValueError(f"pair_fix must index the {n} fixes")
    if m > 1:
        step = np.diff(p_fix)
        if not np.all((step > 0) | ((step == 0) & (np.diff(p_hot) > 0))):
            raise ValueError("pairs must be sorted by (pair_fix, pair_hotspot) without repeats")
    # Officer groups: contiguous runs, ts non-decreasing inside each.
    new_group = np.flatnonzero(np.diff(off) != 0) + 1
    g_start = np.concatenate(([0], new_group)).astype(np.int64) if n else np.empty(0, np.int64)
    g_end = np.append(g_start[1:], n).astype(np.int64) if n else np.empty(0, np.int64)
    g_off = off[g_start]
    if np.unique(g_off).shape[0] != g_off.shape[0]:
        raise ValueError("each officer's fixes must be contiguous in fix_officer")
    if n > 1 and np.any((np.diff(ts) < 0) & (np.diff(off) == 0)):
        raise ValueError("fix_ts_ms must be non-decreasing within each officer")
    by_officer = np.argsort(g_off, kind="stable")
    g_off, g_start, g_end = g_off[by_officer], g_start[by_officer], g_end[by_officer]
    pair_ptr = np.searchsorted(p_fix, np.arange(n + 1)).astype(np.int64)
    new_state, closed, _ = _run(state, ts, prev, g_off, g_start, g_end, pair_ptr, p_hot, p_in,
                                int(np.count_nonzero(p_in)), gap, grace, iv, np.ones(n, np.int32), ts, midpoint,
                                off)
    return new_state, closed


def _per_fix(values, default: int, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(max(n, 0), default, np.int64)
    out = as_1d(values, np.int64, name, n)
    if n and out.min() < 0:
        raise ValueError(f"{name} must be >= 0")
    return out


def advance_released(
    state: VisitState, released, pair_fix, pair_hotspot, pair_inside, *, fix_gap_ms: np.ndarray,
    fix_grace_ms: np.ndarray, fix_interval_ms: np.ndarray, midpoint: bool, fix_n: np.ndarray | None = None,
    fix_since_ms: np.ndarray | None = None,
) -> tuple[VisitState, Visits, np.ndarray]:
    """:func:`advance_visits` for fixes straight from :func:`kernels.ordering.order_fixes` and pairs straight
    from :func:`kernels.locate.locate_points`, without re-checking them (the streaming engine calls this once
    per partition chunk, where the checks cost more than the kernel).

    ``released`` is a :class:`kernels.ordering.ReleasedFixes` (officers ascending, ts ascending within each,
    ``prev_ts_ms`` set); thresholds are per fix, int64 ms. ``fix_n``: how many fixes each stands for (int32;
    None: one each); ``fix_since_ms``: since when the officer was seen without a break up to each (None:
    its own ts).

    Returns
    -------
    new_state, closed
        As :func:`advance_visits`.
    opened : int64 (k,)
        Rows of ``new_state`` whose visit opened in this call.
    """
    g_off, g_start, g_end, pair_ptr, n_inside = _officer_runs(released.officer, pair_fix, pair_inside)
    return _run(state, released.ts_ms, released.prev_ts_ms, g_off, g_start, g_end, pair_ptr,
                np.ascontiguousarray(pair_hotspot, np.int32), pair_inside, n_inside, fix_gap_ms, fix_grace_ms,
                fix_interval_ms, np.ones(released.ts_ms.shape[0], np.int32) if fix_n is None else
                np.ascontiguousarray(fix_n, np.int32),
                released.ts_ms if fix_since_ms is None else np.ascontiguousarray(fix_since_ms, np.int64), midpoint,
                released.officer)


@njit(**JIT_OPTIONS)
def _officer_runs(officer, pair_fix, pair_inside):
    """Officer groups of fixes sorted by officer, the first pair of each fix, and the inside pairs."""
    n = officer.shape[0]
    n_groups = 0
    for f in range(n):
        if f == 0 or officer[f] != officer[f - 1]:
            n_groups += 1
    g_off = np.empty(n_groups, np.int32)
    g_start = np.empty(n_groups, np.int64)
    g_end = np.empty(n_groups, np.int64)
    g = -1
    for f in range(n):
        if f == 0 or officer[f] != officer[f - 1]:
            g += 1
            g_off[g] = officer[f]
            g_start[g] = f
        g_end[g] = f + 1
    pair_ptr = np.empty(n + 1, np.int64)
    p = 0
    for f in range(n + 1):
        while p < pair_fix.shape[0] and pair_fix[p] < f:
            p += 1
        pair_ptr[f] = p
    n_inside = 0
    for q in range(pair_inside.shape[0]):
        if pair_inside[q]:
            n_inside += 1
    return g_off, g_start, g_end, pair_ptr, n_inside


def _run(state, ts, prev, g_off, g_start, g_end, pair_ptr, p_hot, p_in, n_inside, gap, grace, iv, fix_n, since,
         midpoint,
         officer) -> tuple[VisitState, Visits, np.ndarray]:
    n_open = state.officer.shape[0]
    cap = n_open + n_inside
    new = VisitState(*(np.empty(cap, d) for d in STATE_DTYPES))
    fresh = np.empty(cap, np.bool_)
    closed = empty_visits(cap)
    nn, nc, bad = _advance_kernel(
        *(np.ascontiguousarray(a, dtype=d) for a, d in zip(state, STATE_DTYPES)),
        ts, prev, g_off, g_start, g_end,
        pair_ptr, p_hot, p_in, np.ascontiguousarray(gap, np.int64), np.ascontiguousarray(grace, np.int64),
        np.ascontiguousarray(iv, np.int64), fix_n, np.ascontiguousarray(since, np.int64), midpoint,
        *new, fresh, *closed,
    )  # fmt: skip
    if bad >= 0:
        raise ValueError(
            f"fix {bad} (officer {officer[bad]}, ts {ts[bad]}) is older than the "
            "officer's open visits: fixes must come in ts order across batches"
        )
    # Views: the slack is at most the visits this batch could open, and copying every open
    # visit again per batch would cost a streaming caller more than the merge itself.
    new_state = VisitState(*(a[:nn] for a in new))
    closed = Visits(*(a[:nc] for a in closed))
    return new_state, (sorted_visits(closed) if nc > 1 else closed), np.flatnonzero(fresh[:nn])
