"""Stay points: an officer's consecutive fixes that scatter about one place become one fix at their centroid.

A radio with 30-50 m of error puts an officer who stands 20 m inside a 150 m
hot spot outside it on a third of his fixes. Judged one fix at a time, his
visit opens two or three reports late, closes early and may split, and a stay
just outside a neighbouring cell lends it stray fixes. The fixes of a stay
scatter about one point, and their centroid knows that point to within
error / sqrt(n). This kernel finds those stays and hands them on as one
located item at the centroid, covering every fix from the stay's first to
its last. The rules then judge the stay by where the officer stood, not by
where each report landed. It is the stay-point detection of trajectory mining
(Li et al. 2008, "Mining user similarity based on location history"), with
the radius in units of each fix's stated accuracy.

Per officer, in time order (greedy, as a plain reading of the fixes would):

* a cluster starts at the first undecided fix with a radius (a fix without
  one goes on at once); each following fix joins it
  when it lies within its radius of the centroid of the members so far (the
  engine's: a few times its stated accuracy, and 0, never joining, where a
  walker would not leave that radius between two reports) (a wider test for the first few members,
  whose centroid is itself uncertain, let walk-in fixes join and measured
  worse); a fix that does not is a miss, and more
  than ``max_misses`` misses in a row, or a gap longer than the fix's gap
  limit, ends the cluster;
* a cluster of at least ``min_fixes`` members is a stay: every fix from its
  first to its last member (misses between members included) becomes one
  item at the members' centroid, and the fixes after its last member are
  read again from the start;
* a shorter cluster releases its first fix unchanged, and the fixes after
  it are read again.

A stay is only known when it ends, so its fixes are held until then (a
cluster not yet confirmed holds at most about ``min_fixes x (max_misses + 1)``
fixes; a confirmed stay holds only its sums and its trailing misses).
``final`` releases everything held, as if the officer's fixes ended there:
the end of a replay, an officer gone silent, and the live view (on a copy
of the state) use it. The state carries over between calls, and any cut of
an officer's fixes into batches gives the same items as one batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS

# Indices into a cluster's integer scratch row.
_ACTIVE, _FIRST, _LAST, _SPAN, _MEMBERS, _MISSES, _PREV, _IV0, _IV1 = range(9)


class StayState(NamedTuple):
    """Held fixes and confirmed stays, rows sorted by officer.

    officer : int32 (n,) officers with something held.
    active : bool (n,) a confirmed stay is open.
    first_ms, last_ms : int64 (n,) its first and last member.
    n_span : int32 (n,) fixes from its first to its last member.
    n_members : int32 (n,) members.
    sum_x_m, sum_y_m, sum_accuracy_m : float64 (n,) sums over the members.
    held_* : the fixes held (not yet decided), sorted by (officer, ts): officer int32, ts_ms int64,
        x_m, y_m, accuracy_m float64, gap_ms int64 (the gap limit that applies before each).
    """

    officer: np.ndarray
    active: np.ndarray
    first_ms: np.ndarray
    last_ms: np.ndarray
    n_span: np.ndarray
    n_members: np.ndarray
    sum_x_m: np.ndarray
    sum_y_m: np.ndarray
    sum_accuracy_m: np.ndarray
    first_prev_ms: np.ndarray
    first_interval_ms: np.ndarray
    last_interval_ms: np.ndarray
    held_officer: np.ndarray
    held_ts_ms: np.ndarray
    held_x_m: np.ndarray
    held_y_m: np.ndarray
    held_accuracy_m: np.ndarray
    held_radius_m: np.ndarray
    held_gap_ms: np.ndarray
    held_prev_ms: np.ndarray
    held_interval_ms: np.ndarray


N_ROW = 12  # StayState's per-officer fields come first
STATE_DTYPES = (np.int32, np.bool_, np.int64, np.int64, np.int32, np.int32, np.float64, np.float64, np.float64,
                np.int64, np.int64, np.int64,
                np.int32, np.int64, np.float64, np.float64, np.float64, np.float64, np.int64, np.int64, np.int64)


class StayItems(NamedTuple):
    """Released items in time order per officer: a fix as it came (``n_fixes`` 1) or a stay at its centroid.

    officer int32 ; ts_ms int64 (a stay's first fix) ; end_ms int64 (its last member; ts_ms for a fix) ;
    x_m, y_m float64 ; accuracy_m float64 (a stay: the members' mean accuracy / sqrt(members)) ;
    n_fixes int32 (a stay: every fix it covers) ; prev_ms int64 (the officer's fix before it) ;
    interval_ms, end_interval_ms int64 (his reporting interval at its first and its last fix).
    """

    officer: np.ndarray
    ts_ms: np.ndarray
    end_ms: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    accuracy_m: np.ndarray
    n_fixes: np.ndarray
    prev_ms: np.ndarray
    interval_ms: np.ndarray
    end_interval_ms: np.ndarray


ITEM_DTYPES = (np.int32, np.int64, np.int64, np.float64, np.float64, np.float64, np.int32, np.int64, np.int64, np.int64)


def empty_stay_state() -> StayState:
    return StayState(*(np.empty(0, d) for d in STATE_DTYPES))


@njit(inline="always", **JIT_OPTIONS)
def _emit(o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no, off, ts, end, x, y, acc, n, prev,
          iv, iv1):
    o_prev[no] = prev
    o_iv[no] = iv
    o_iv1[no] = iv1
    o_off[no] = off
    o_ts[no] = ts
    o_end[no] = end
    o_x[no] = x
    o_y[no] = y
    o_acc[no] = acc
    o_n[no] = n
    return no + 1


@njit(inline="always", **JIT_OPTIONS)
def _resolve(off, q_ts, q_x, q_y, q_acc, q_rad, q_gap, q_prev, q_iv, h, t, ci, cf, final, min_fixes, max_misses,
             o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no):  # fmt: skip
    """Decide what the held fixes ``q_*[h:t]`` allow, given the cluster ``ci``/``cf``; returns (h, no)."""
    while True:
        if ci[_ACTIVE]:
            ended = False
            while h + ci[_MISSES] < t:
                j = h + ci[_MISSES]
                before = q_ts[j - 1] if j > h else ci[_LAST]
                if q_ts[j] - before > q_gap[j]:
                    ended = True
                    break
                dx = q_x[j] - cf[0] / ci[_MEMBERS]
                dy = q_y[j] - cf[1] / ci[_MEMBERS]
                r = q_rad[j]
                if r > 0.0 and dx * dx + dy * dy <= r * r:
                    ci[_SPAN] += ci[_MISSES] + 1
                    ci[_MEMBERS] += 1
                    cf[0] += q_x[j]
                    cf[1] += q_y[j]
                    cf[2] += q_acc[j]
                    ci[_LAST] = q_ts[j]
                    ci[_IV1] = q_iv[j]
                    ci[_MISSES] = 0
                    h = j + 1
                else:
                    ci[_MISSES] += 1
                    if ci[_MISSES] > max_misses:
                        ended = True
                        break
            if not (ended or final):
                return h, no
            m = ci[_MEMBERS]
            no = _emit(o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no, off, ci[_FIRST], ci[_LAST], cf[0] / m,
                       cf[1] / m, cf[2] / m / np.sqrt(m), ci[_SPAN], ci[_PREV], ci[_IV0], ci[_IV1])
            ci[_ACTIVE] = 0
            ci[_MISSES] = 0
            continue  # the trailing misses are read again
        if h >= t:
            return h, no
        if q_rad[h] == 0.0:  # no stay starts where none can be told from a walk: on at once
            no = _emit(o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no, off, q_ts[h], q_ts[h],
                       q_x[h], q_y[h], q_acc[h], 1, q_prev[h], q_iv[h], q_iv[h])
            h += 1
            continue
        m = 1
        sx = q_x[h]
        sy = q_y[h]
        sa = q_acc[h]
        misses = 0
        last = h
        ended = False
        for j in range(h + 1, t):
            if q_ts[j] - q_ts[j - 1] > q_gap[j]:
                ended = True
                break
            dx = q_x[j] - sx / m
            dy = q_y[j] - sy / m
            r = q_rad[j]
            if r > 0.0 and dx * dx + dy * dy <= r * r:
                m += 1
                sx += q_x[j]
                sy += q_y[j]
                sa += q_acc[j]
                misses = 0
                last = j
            else:
                misses += 1
                if misses > max_misses:
                    ended = True
                    break
        if m >= min_fixes:
            if ended or final:
                no = _emit(o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no, off, q_ts[h], q_ts[last], sx / m, sy / m,
                           sa / m / np.sqrt(m), last - h + 1, q_prev[h], q_iv[h], q_iv[last])
                h = last + 1
                continue
            ci[_ACTIVE] = 1
            ci[_FIRST] = q_ts[h]
            ci[_LAST] = q_ts[last]
            ci[_SPAN] = last - h + 1
            ci[_MEMBERS] = m
            ci[_MISSES] = t - 1 - last
            ci[_PREV] = q_prev[h]
            ci[_IV0] = q_iv[h]
            ci[_IV1] = q_iv[last]
            cf[0] = sx
            cf[1] = sy
            cf[2] = sa
            return last + 1, no
        if not (ended or final):
            return h, no
        no = _emit(o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no, off, q_ts[h], q_ts[h], q_x[h], q_y[h], q_acc[h], 1,
                   q_prev[h], q_iv[h], q_iv[h])
        h += 1


@njit(**JIT_OPTIONS)
def _advance_kernel(s_off, s_active, s_first, s_last, s_span, s_members, s_sx, s_sy, s_sa, s_prev, s_iv0, s_iv1,
                    h_off, h_ts, h_x, h_y, h_acc, h_rad, h_gap, h_prev, h_iv,
                    f_off, f_ts, f_x, f_y, f_acc, f_rad, f_gap, f_prev, f_iv, final_off, final_all,
                    min_fixes, max_misses,
                    n_off, n_active, n_first, n_last, n_span, n_members, n_sx, n_sy, n_sa, n_prev, n_iv0, n_iv1,
                    g_off, g_ts, g_x, g_y, g_acc, g_rad, g_gap, g_prev, g_iv,
                    o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1):  # fmt: skip
    """Merge the state (rows ``s_*``, held fixes ``h_*``) with the batch ``f_*`` (sorted by officer, then
    time) officer by officer; officers in ``final_off`` (sorted), or every officer with ``final_all``, are
    then released in full. Writes the new state to ``n_*``/``g_*`` and the items to ``o_*``; returns
    (rows, held, items)."""
    n_rows, n_held, n_fix, n_final = s_off.shape[0], h_off.shape[0], f_off.shape[0], final_off.shape[0]
    none = 2**31  # past every int32 officer code
    most = 1
    a = b = c = 0
    while a < n_rows or c < n_fix:  # largest held + new fixes of one officer: the scratch size
        o = min(s_off[a] if a < n_rows else none, f_off[c] if c < n_fix else none)
        cnt = 0
        while a < n_rows and s_off[a] == o:
            a += 1
        while b < n_held and h_off[b] == o:
            cnt += 1
            b += 1
        while c < n_fix and f_off[c] == o:
            cnt += 1
            c += 1
        most = max(most, cnt)
    q_ts = np.empty(most, np.int64)
    q_x = np.empty(most, np.float64)
    q_y = np.empty(most, np.float64)
    q_acc = np.empty(most, np.float64)
    q_rad = np.empty(most, np.float64)
    q_gap = np.empty(most, np.int64)
    q_prev = np.empty(most, np.int64)
    q_iv = np.empty(most, np.int64)
    ci = np.zeros(9, np.int64)
    cf = np.zeros(3, np.float64)
    nr = ng = no = 0
    a = b = c = d = 0
    while a < n_rows or c < n_fix:
        o = min(s_off[a] if a < n_rows else none, f_off[c] if c < n_fix else none)
        ci[:] = 0
        cf[:] = 0.0
        if a < n_rows and s_off[a] == o:
            ci[_ACTIVE] = s_active[a]
            ci[_FIRST] = s_first[a]
            ci[_LAST] = s_last[a]
            ci[_SPAN] = s_span[a]
            ci[_MEMBERS] = s_members[a]
            ci[_PREV] = s_prev[a]
            ci[_IV0] = s_iv0[a]
            ci[_IV1] = s_iv1[a]
            cf[0] = s_sx[a]
            cf[1] = s_sy[a]
            cf[2] = s_sa[a]
            a += 1
        t = 0
        while b < n_held and h_off[b] == o:
            q_ts[t], q_x[t], q_y[t], q_acc[t], q_rad[t] = h_ts[b], h_x[b], h_y[b], h_acc[b], h_rad[b]
            q_gap[t], q_prev[t], q_iv[t] = h_gap[b], h_prev[b], h_iv[b]
            t += 1
            b += 1
        # An open stay's held fixes are its trailing misses, already read.
        if ci[_ACTIVE]:
            ci[_MISSES] = t
        h = 0
        h, no = _resolve(o, q_ts, q_x, q_y, q_acc, q_rad, q_gap, q_prev, q_iv, h, t, ci, cf, False, min_fixes,
                         max_misses, o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no)
        while c < n_fix and f_off[c] == o:
            # Shift the undecided tail to the front so the scratch never outgrows held + new.
            if h > 0:
                for k in range(h, t):
                    q_ts[k - h], q_x[k - h], q_y[k - h], q_acc[k - h] = q_ts[k], q_x[k], q_y[k], q_acc[k]
                    q_rad[k - h], q_gap[k - h], q_prev[k - h], q_iv[k - h] = q_rad[k], q_gap[k], q_prev[k], q_iv[k]
                t -= h
                h = 0
            q_ts[t], q_x[t], q_y[t], q_acc[t], q_rad[t] = f_ts[c], f_x[c], f_y[c], f_acc[c], f_rad[c]
            q_gap[t], q_prev[t], q_iv[t] = f_gap[c], f_prev[c], f_iv[c]
            t += 1
            c += 1
            h, no = _resolve(o, q_ts, q_x, q_y, q_acc, q_rad, q_gap, q_prev, q_iv, h, t, ci, cf, False,
                             min_fixes, max_misses, o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no)
        while d < n_final and final_off[d] < o:
            d += 1
        if final_all or (d < n_final and final_off[d] == o):
            h, no = _resolve(o, q_ts, q_x, q_y, q_acc, q_rad, q_gap, q_prev, q_iv, h, t, ci, cf, True, min_fixes,
                             max_misses, o_off, o_ts, o_end, o_x, o_y, o_acc, o_n, o_prev, o_iv, o_iv1, no)
        if ci[_ACTIVE] or h < t:
            n_off[nr] = o
            n_active[nr] = ci[_ACTIVE] != 0
            n_first[nr] = ci[_FIRST]
            n_last[nr] = ci[_LAST]
            n_span[nr] = ci[_SPAN]
            n_members[nr] = ci[_MEMBERS]
            n_prev[nr] = ci[_PREV]
            n_iv0[nr] = ci[_IV0]
            n_iv1[nr] = ci[_IV1]
            n_sx[nr] = cf[0]
            n_sy[nr] = cf[1]
            n_sa[nr] = cf[2]
            nr += 1
            for k in range(h, t):
                g_off[ng], g_ts[ng], g_x[ng], g_y[ng], g_acc[ng] = o, q_ts[k], q_x[k], q_y[k], q_acc[k]
                g_rad[ng], g_gap[ng], g_prev[ng], g_iv[ng] = q_rad[k], q_gap[k], q_prev[k], q_iv[k]
                ng += 1
    return nr, ng, no


def advance_stays(state: StayState, officer, ts_ms, x_m, y_m, accuracy_m, radius_m, gap_ms, *, min_fixes: int,
                  max_misses: int, prev_ms=None, interval_ms=None, final_officers=None,
                  final_all: bool = False) -> tuple[StayState, StayItems]:
    """Read a batch of accepted fixes into the stays; the items now decided, and the new state.

    ``officer`` int32 codes with each officer's fixes in time order and officers ascending (as
    ``np.lexsort((ts, officer))`` gives); ``accuracy_m`` with no NaN (the caller's default in its place);
    ``radius_m`` how near the centroid each must lie to join a stay (0: it never joins one); ``gap_ms``
    the gap limit before each fix; ``prev_ms`` and ``interval_ms`` (int64; default: no previous
    fix, interval 0) ride along to the items. ``final_officers`` (sorted int32) and ``final_all`` release
    everything held for those officers after the batch. The state given is not changed.
    """
    n = len(ts_ms)
    if min_fixes < 2:
        raise ValueError(f"min_fixes must be at least 2, got {min_fixes}")
    if max_misses < 0:
        raise ValueError("max_misses must be >= 0")
    officer = np.ascontiguousarray(officer, np.int32)
    if n > 1 and np.any((np.diff(officer) < 0) | ((np.diff(officer) == 0) & (np.diff(ts_ms) < 0))):
        raise ValueError("fixes must be sorted by officer, then time")
    prev_ms = np.full(n, np.iinfo(np.int64).min, np.int64) if prev_ms is None else prev_ms
    interval_ms = np.zeros(n, np.int64) if interval_ms is None else interval_ms
    final_off = np.ascontiguousarray(np.empty(0) if final_officers is None else final_officers, np.int32)
    rows = len(state.officer) + n
    held = len(state.held_officer) + n
    new = ([np.empty(rows, d) for d in STATE_DTYPES[:N_ROW]] + [np.empty(held, d) for d in STATE_DTYPES[N_ROW:]])
    # Each item is a held or new fix, or an open stay (whose members are no longer held).
    out = [np.empty(held + len(state.officer), d) for d in ITEM_DTYPES]
    batch = [officer] + [np.ascontiguousarray(a, d) for a, d in zip(
        (ts_ms, x_m, y_m, accuracy_m, radius_m, gap_ms, prev_ms, interval_ms), STATE_DTYPES[N_ROW + 1:])]
    nr, ng, no = _advance_kernel(*state, *batch, final_off, bool(final_all), int(min_fixes), int(max_misses), *new,
                                 *out)
    new_state = StayState(*(a[:nr] for a in new[:N_ROW]), *(a[:ng] for a in new[N_ROW:]))
    return new_state, StayItems(*(a[:no] for a in out))
