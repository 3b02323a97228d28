"""Per-officer reorder buffer: duplicates, late fixes and impossible speed.

Fixes arrive in network order, not event order (apps buffer while offline and
upload late). :func:`order_fixes` holds each officer's fixes for
``reorder_window_s`` of event time, releases them in time order and rejects
duplicates, late fixes and fixes that imply an impossible speed. The state
carries over between calls, so a stream cut into any batches gives the same
released fixes and rejects as one batch.

Rules, per officer, arrivals in arrival order:

* ``ts < released_ts`` is late; ``ts == released_ts`` or equal to a pending
  fix's ``ts`` is a duplicate (the first one wins).
* Otherwise the fix joins the pending buffer and
  ``max_seen = max(max_seen, ts)``; every pending fix with
  ``ts <= max_seen - reorder_window`` is then released in time order.
* A released fix that implies more than ``max_speed_mps`` since the last
  accepted fix (the anchor) is rejected (``impossible_speed``), whatever the
  time between them: a long silence only allows a longer distance. The first
  fix of an officer has no anchor and is accepted.
* Re-anchoring: when ``reanchor_after`` consecutive released fixes were all
  rejected for speed and each lies within ``max_speed_mps`` of the previous
  one, the last of them is accepted and becomes the anchor (the earlier ones
  stay rejected). One wrong anchor (a bad first fix, a jump the speed check
  let through) therefore costs ``reanchor_after - 1`` good fixes, not the
  rest of the track; a rejected fix inconsistent with the previous rejected
  one starts a new run of one.
* ``released_ts`` moves on for every released fix, accepted or not.
* ``flush=True`` releases every pending fix once the batch is processed;
  ``flush_before_ms`` releases only the pending fixes of officers whose
  newest fix (``max_seen``) is older than it: officers silent that long
  will not send a fix the buffer could still put before them (the stream's
  event-time close of silent officers).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._checks import check_count, check_fixes, check_positive, seconds_to_ms
from kernels._config import JIT_OPTIONS
from kernels.ordering_state import (FIX_DTYPES, MAX_REANCHOR, MAX_TS_MS, N_PER, NO_TS_MS, REJ_DTYPES, REJECT_DUPLICATE,
                                    REJECT_LATE, REJECT_REASONS, REJECT_SPEED, REL_DTYPES, OrderingState,
                                    RejectedFixes, ReleasedFixes, alloc, empty_ordering_state, per_officer_arrays)

__all__ = ["NO_TS_MS", "REJECT_DUPLICATE", "REJECT_LATE", "REJECT_SPEED", "REJECT_REASONS", "OrderingState",
           "ReleasedFixes", "RejectedFixes", "empty_ordering_state", "order_fixes"]

@njit(
    "void(int32[::1], int64[::1], float64[::1], float64[::1], int64[::1], float64[::1], int64, "
    "int32[::1], int64[::1], float64[::1], float64[::1], int64[::1], float64[::1])",
    **JIT_OPTIONS,
)
def _group_by_officer(officer, ts, x, y, row, acc, n_officers, g_off, g_ts, g_x, g_y, g_row, g_acc):
    """Stable counting sort of the batch by officer code into ``g_*``.

    Codes are dense, so this is O(n + n_officers). It scatters the values
    rather than returning a permutation: reads stay sequential and the main
    kernel then walks each officer's fixes contiguously.
    """
    start = np.zeros(n_officers + 1, np.int64)
    for i in range(officer.shape[0]):
        start[officer[i] + 1] += 1
    for o in range(n_officers):
        start[o + 1] += start[o]
    for i in range(officer.shape[0]):
        o = officer[i]
        q = start[o]
        g_off[q] = o
        g_ts[q] = ts[i]
        g_x[q] = x[i]
        g_y[q] = y[i]
        g_row[q] = row[i]
        g_acc[q] = acc[i]
        start[o] = q + 1


@njit(**JIT_OPTIONS)
def _too_fast(dx, dy, dt_ms, max_speed_mps):
    """dist / (dt_ms / 1000) > max_speed, squared to stay exact; NaN: False."""
    lim = max_speed_mps * dt_ms
    return (dx * dx + dy * dy) * 1e6 > lim * lim


@njit(**JIT_OPTIONS)
def _copy_run(p_off, p_ts, p_x, p_y, p_row, p_acc, j0, j1, n_off, n_ts, n_x, n_y, n_row, n_acc, n):
    # A plain loop: slice assignment would copy the source first (numba
    # guards against overlap), an allocation per officer.
    for q in range(j0, j1):
        n_off[n] = p_off[q]
        n_ts[n] = p_ts[q]
        n_x[n] = p_x[q]
        n_y[n] = p_y[q]
        n_row[n] = p_row[q]
        n_acc[n] = p_acc[q]
        n += 1
    return n


@njit(
    "UniTuple(int64, 3)("
    "int64[::1], int64[::1], float64[::1], float64[::1], int64[::1], "
    "int8[::1], float64[::1], float64[::1], "
    "int32[::1], int64[::1], float64[::1], float64[::1], int64[::1], float64[::1], "
    "int32[::1], int64[::1], float64[::1], float64[::1], int64[::1], float64[::1], "
    "int64, float64, int64, int64, "
    "int32[::1], int64[::1], float64[::1], float64[::1], int64[::1], float64[::1], "
    "int32[::1], int64[::1], float64[::1], float64[::1], int64[::1], float64[::1], int64[::1], "
    "int64[::1], int8[::1])",
    **JIT_OPTIONS,
)
def _order_kernel(
    released_ts, accepted_ts, accepted_x, accepted_y, max_seen,
    speed_rejects, rejected_x, rejected_y,
    p_off, p_ts, p_x, p_y, p_row, p_acc,
    b_off, b_ts, b_x, b_y, b_row, b_acc,
    window_ms, max_speed_mps, reanchor_after, flush_before,
    n_off, n_ts, n_x, n_y, n_row, n_acc,
    r_off, r_ts, r_x, r_y, r_row, r_acc, r_prev,
    j_row, j_reason,
):  # fmt: skip
    """Process officers in ascending code order, merging the pending buffer
    (sorted by officer) with the batch ``b_*`` (grouped by officer, stable).

    Per-officer arrays are updated in place; new pending, released and
    rejected fixes are written to the ``n_*``, ``r_*`` and ``j_*`` outputs.
    After its arrivals, every pending fix of an officer whose ``max_seen``
    is below ``flush_before`` is released (``NO_TS_MS``: none, the int64
    maximum: all). Returns (n_pending, n_released, n_rejected).
    """
    flush = flush_before != NO_TS_MS
    n_batch = b_off.shape[0]
    n_pend = p_off.shape[0]
    # Scratch for one officer's buffer (its pending plus its arrivals),
    # grown on demand.
    w_ts = np.empty(16, np.int64)
    w_x = np.empty(16, np.float64)
    w_y = np.empty(16, np.float64)
    w_row = np.empty(16, np.int64)
    w_acc = np.empty(16, np.float64)

    n_new = 0
    n_rel = 0
    n_rej = 0
    k = 0
    j = 0
    while k < n_batch or (flush and j < n_pend):
        if flush and (k >= n_batch or (j < n_pend and p_off[j] < b_off[k])):
            o = p_off[j]  # a flush releases officers with nothing new too
        else:
            o = b_off[k]
        if not flush:
            # Officers with nothing new keep their pending fixes as they are:
            # gallop to officer o (it is near: officers come in order) and
            # copy the run in bulk.
            lo = j
            step = 1
            while lo + step < n_pend and p_off[lo + step] < o:
                lo += step
                step *= 2
            hi = min(lo + step, n_pend)
            while lo < hi:
                mid = (lo + hi) >> 1
                if p_off[mid] < o:
                    lo = mid + 1
                else:
                    hi = mid
            n_new = _copy_run(p_off, p_ts, p_x, p_y, p_row, p_acc, j, lo,
                              n_off, n_ts, n_x, n_y, n_row, n_acc, n_new)  # fmt: skip
            j = lo
        j0 = j
        while j < n_pend and p_off[j] == o:
            j += 1
        k0 = k
        while k < n_batch and b_off[k] == o:
            k += 1
        need = (j - j0) + (k - k0)
        if need > w_ts.shape[0]:
            size = max(need, 2 * w_ts.shape[0])
            w_ts = np.empty(size, np.int64)
            w_x = np.empty(size, np.float64)
            w_y = np.empty(size, np.float64)
            w_row = np.empty(size, np.int64)
            w_acc = np.empty(size, np.float64)

        head = 0
        tail = 0
        for q in range(j0, j):
            w_ts[tail] = p_ts[q]
            w_x[tail] = p_x[q]
            w_y[tail] = p_y[q]
            w_row[tail] = p_row[q]
            w_acc[tail] = p_acc[q]
            tail += 1
        rts = released_ts[o]
        ms = max_seen[o]
        a_ts = accepted_ts[o]
        a_x = accepted_x[o]
        a_y = accepted_y[o]
        n_bad = speed_rejects[o]
        j_x = rejected_x[o]
        j_y = rejected_y[o]
        # One pass per arrival, then one more (i == k) for the flush.
        for i in range(k0, k + 1):
            if i < k:
                t = b_ts[i]
                if rts != NO_TS_MS and t < rts:
                    j_row[n_rej] = b_row[i]
                    j_reason[n_rej] = REJECT_LATE
                    n_rej += 1
                    continue
                # Binary search for t in the sorted live part [head, tail).
                lo = head
                hi = tail
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if w_ts[mid] < t:
                        lo = mid + 1
                    else:
                        hi = mid
                if t == rts or (lo < tail and w_ts[lo] == t):
                    j_row[n_rej] = b_row[i]
                    j_reason[n_rej] = REJECT_DUPLICATE
                    n_rej += 1
                    continue
                # In-order arrivals append (lo == tail): the shift is empty.
                for q in range(tail, lo, -1):
                    w_ts[q] = w_ts[q - 1]
                    w_x[q] = w_x[q - 1]
                    w_y[q] = w_y[q - 1]
                    w_row[q] = w_row[q - 1]
                    w_acc[q] = w_acc[q - 1]
                w_ts[lo] = t
                w_x[lo] = b_x[i]
                w_y[lo] = b_y[i]
                w_row[lo] = b_row[i]
                w_acc[lo] = b_acc[i]
                tail += 1
                if t > ms:
                    ms = t
                limit = ms - window_ms
            elif ms < flush_before:
                limit = MAX_TS_MS
            else:
                break
            while head < tail and w_ts[head] <= limit:
                t = w_ts[head]
                x = w_x[head]
                y = w_y[head]
                # dist / dt_s > v, squared so integer inputs compare exactly;
                # NaN compares False, so it is never rejected. Released ts
                # only grow, so dt > 0 here and below.
                ok = a_ts == NO_TS_MS or not _too_fast(x - a_x, y - a_y, t - a_ts, max_speed_mps)
                if not ok:
                    # The run of speed rejects goes on when this fix is
                    # plausible from the previous reject (at ts rts).
                    if n_bad > 0 and _too_fast(x - j_x, y - j_y, t - rts, max_speed_mps):
                        n_bad = 0
                    n_bad += 1
                    j_x = x
                    j_y = y
                    ok = n_bad >= reanchor_after
                if ok:
                    n_bad = 0
                    r_prev[n_rel] = a_ts
                    a_ts = t
                    a_x = x
                    a_y = y
                    r_off[n_rel] = o
                    r_ts[n_rel] = t
                    r_x[n_rel] = x
                    r_y[n_rel] = y
                    r_row[n_rel] = w_row[head]
                    r_acc[n_rel] = w_acc[head]
                    n_rel += 1
                else:
                    j_row[n_rej] = w_row[head]
                    j_reason[n_rej] = REJECT_SPEED
                    n_rej += 1
                rts = t
                head += 1
        for q in range(head, tail):
            n_off[n_new] = o
            n_ts[n_new] = w_ts[q]
            n_x[n_new] = w_x[q]
            n_y[n_new] = w_y[q]
            n_row[n_new] = w_row[q]
            n_acc[n_new] = w_acc[q]
            n_new += 1
        released_ts[o] = rts
        max_seen[o] = ms
        accepted_ts[o] = a_ts
        accepted_x[o] = a_x
        accepted_y[o] = a_y
        speed_rejects[o] = n_bad
        rejected_x[o] = j_x
        rejected_y[o] = j_y
    # Officers past the last arrival (none after a flush).
    n_new = _copy_run(p_off, p_ts, p_x, p_y, p_row, p_acc, j, n_pend,
                      n_off, n_ts, n_x, n_y, n_row, n_acc, n_new)  # fmt: skip
    return n_new, n_rel, n_rej


def order_fixes(
    state: OrderingState,
    officer,
    ts_ms,
    x_m,
    y_m,
    row,
    *,
    reorder_window_s: float,
    max_speed_mps: float,
    max_gap_s: float | None = None,
    reanchor_after: int = 3,
    flush: bool = False,
    flush_before_ms: int | None = None,
    inplace: bool = False,
    accuracy_m=None,
) -> tuple[OrderingState, ReleasedFixes, RejectedFixes]:
    """Put one batch of fixes through the per-officer reorder buffer.

    Parameters
    ----------
    state : OrderingState
        From :func:`empty_ordering_state` or the previous call.
    officer : int (n,)
        Dense officer codes, 0 <= code < 2**31 - 1.
    ts_ms : int64 (n,)
        Event time, epoch milliseconds.
    x_m, y_m : float64 (n,)
        Metric coordinates (EPSG:27700), metres. NaN is carried through and
        never triggers a speed reject (the caller rejects NaN beforehand).
    row : int64 (n,)
        The caller's id of each fix, echoed in ``released`` and ``rejected``.
    reorder_window_s : float
        Event-time seconds a fix is held back for late arrivals; 0 releases
        every fix at once.
    max_speed_mps : float
        Fastest plausible speed, metres per second (inf disables the check).
    max_gap_s : float, optional
        Checked (seconds >= 0) and otherwise unused: the speed check no longer
        stops at a gap (a fix after a long silence could poison the anchor).
    reanchor_after : int
        Consecutive, mutually consistent speed rejects after which the last
        one becomes the new anchor, 1..127 (see the module docstring).
    flush : bool
        Release every pending fix after the batch (end of a replay file,
        policing-day close).
    flush_before_ms : int, optional
        Epoch ms: after the batch, release every pending fix of the officers
        whose newest fix is older than this (officers gone silent; their
        pending fixes are all older still). Ignored with ``flush``.
    inplace : bool
        Update the per-officer arrays of ``state`` in place instead of copying
        them (for a caller that drops the old state; saves a copy of every
        officer's state per batch).
    accuracy_m : float64 (n,), optional
        Each fix's stated accuracy, metres, carried to its release (NaN or
        absent: none stated).

    Returns
    -------
    new_state : OrderingState
    released : ReleasedFixes
        Accepted fixes, officers ascending, ts ascending within an officer.
    rejected : RejectedFixes
        Duplicates, late fixes and impossible speeds, with ``REJECT_*`` codes.
    """
    officer, ts, x, y, rows = check_fixes(officer, ts_ms, x_m, y_m, row)
    n = officer.shape[0]
    # A writeable copy: the kernel's signature asks for plain arrays, and inputs can be read-only views.
    acc = np.full(n, np.nan) if accuracy_m is None else np.array(np.broadcast_to(accuracy_m, (n,)), np.float64)
    window_ms = seconds_to_ms(reorder_window_s, "reorder_window_s")
    if max_gap_s is not None:
        seconds_to_ms(max_gap_s, "max_gap_s")
    reanchor = check_count(reanchor_after, "reanchor_after", 1, MAX_REANCHOR)
    if flush:
        flush_before = MAX_TS_MS
    elif flush_before_ms is None:
        flush_before = NO_TS_MS
    else:
        flush_before = int(flush_before_ms)
        if not NO_TS_MS < flush_before <= MAX_TS_MS:
            raise ValueError(f"flush_before_ms must be an epoch ms above {NO_TS_MS}, got {flush_before_ms}")
    speed = check_positive(max_speed_mps, "max_speed_mps")
    if not isinstance(state, OrderingState):
        raise ValueError("state must be an OrderingState (see empty_ordering_state)")
    n_pend = state.pending_officer.shape[0]
    if any(a.shape != state[0].shape for a in state[1:N_PER]) or any(
        a.shape != (n_pend,) for a in state[N_PER:]
    ):
        raise ValueError("state arrays have inconsistent lengths")

    n_need = int(officer.max()) + 1 if n else 0
    per_officer = per_officer_arrays(state, n_need, inplace)
    n_officers = per_officer[0].shape[0]
    if n_officers <= 2 * n + 1024:
        batch = alloc(n, FIX_DTYPES)
        _group_by_officer(officer, ts, x, y, rows, acc, n_officers, *batch)
    else:  # few fixes, many officers: a comparison sort beats a counting one
        perm = np.argsort(officer, kind="stable")
        batch = tuple(a[perm] for a in (officer, ts, x, y, rows, acc))

    cap = n_pend + n
    new_pend, rel, rej = alloc(cap, FIX_DTYPES), alloc(cap, REL_DTYPES), alloc(cap, REJ_DTYPES)
    n_new, n_rel, n_rej = _order_kernel(
        *per_officer,
        *(np.ascontiguousarray(a, dtype=d) for a, d in zip(state[N_PER:], FIX_DTYPES)),
        *batch,
        window_ms, speed, reanchor, flush_before,
        *new_pend, *rel, *rej,
    )  # fmt: skip
    # Views are fine while the slack is small; a mostly empty buffer is copied
    # so a big replay batch does not pin its memory in the state.
    trim = (lambda a: a[:n_new].copy()) if 2 * n_new < cap else (lambda a: a[:n_new])
    new_state = OrderingState(*per_officer, *(trim(a) for a in new_pend))
    released = ReleasedFixes(*(a[:n_rel] for a in rel))
    rejected = RejectedFixes(*(a[:n_rej] for a in rej))
    return new_state, released, rejected
