"""The visit state machine itself, compiled: one pass over a batch of located fixes, officer by officer.

The rules it applies are set out in :mod:`kernels.visits`, which checks its inputs and calls it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS
from kernels.ordering_state import NO_TS_MS


@njit(**JIT_OPTIONS)
def _midway(a, b, max_gap_ms, midpoint):
    """Where a boundary between fixes at ``a`` (inside) and ``b`` lies: a
    itself, or halfway to b when midpoints are on and b is a real fix no more
    than max_gap away (silence is not presence)."""
    if midpoint and b != NO_TS_MS and abs(b - a) <= max_gap_ms:
        return a + (b - a) // 2
    return a


@njit(**JIT_OPTIONS)
def _copy_row(d_hot, d_start, d_in, d_seen, d_out, d_after, d_n, i,
              s_hot, s_start, s_in, s_seen, s_out, s_after, s_n, j):  # fmt: skip
    d_hot[i] = s_hot[j]
    d_start[i] = s_start[j]
    d_in[i] = s_in[j]
    d_seen[i] = s_seen[j]
    d_out[i] = s_out[j]
    d_after[i] = s_after[j]
    d_n[i] = s_n[j]


@njit(**JIT_OPTIONS)
def _open_row(b_hot, b_start, b_in, b_seen, b_out, b_after, b_n, i, hot, t, prev, max_gap_ms, midpoint, n):
    b_hot[i] = hot
    b_start[i] = _midway(t, prev, max_gap_ms, midpoint)
    b_in[i] = t
    b_seen[i] = t
    b_out[i] = NO_TS_MS
    b_after[i] = NO_TS_MS
    b_n[i] = n


@njit(
    "UniTuple(int64, 3)("
    "int32[::1], int32[::1], int64[::1], int64[::1], int64[::1], int64[::1], int64[::1], int32[::1], "
    "int64[::1], int64[::1], int32[::1], int64[::1], int64[::1], "
    "int64[::1], int32[::1], boolean[::1], int64[::1], int64[::1], int64[::1], int32[::1], int64[::1], boolean, "
    "int32[::1], int32[::1], int64[::1], int64[::1], int64[::1], int64[::1], int64[::1], int32[::1], "
    "boolean[::1], int32[::1], int32[::1], int64[::1], int64[::1], int32[::1], int64[::1], int64[::1])",
    **JIT_OPTIONS,
)
def _advance_kernel(
    s_off, s_hot, s_start, s_in, s_seen, s_out, s_after, s_n,
    fix_ts, fix_prev, g_off, g_start, g_end,
    pair_ptr, pair_hot, pair_inside, fix_gap, fix_grace, fix_iv, fix_n, fix_since, midpoint,
    n_off, n_hot, n_start, n_in, n_seen, n_out, n_after, n_n, n_fresh,
    c_off, c_hot, c_start, c_end, c_n, c_iv, c_gap,
):  # fmt: skip
    """Advance the open visits ``s_*`` (sorted by officer, hotspot) over the
    officer groups: group ``g`` is officer ``g_off[g]`` with fixes
    ``g_start[g]:g_end[g]`` in ts order; groups come in ascending officer
    order. Fix ``f``'s pairs are ``pair_ptr[f]:pair_ptr[f + 1]``, sorted by
    hotspot; ``fix_prev[f]`` is the officer's fix before it (used only with
    ``midpoint``). ``fix_gap[f]`` and ``fix_grace[f]`` are the gap limit and
    exit grace that apply at fix ``f`` (ms), ``fix_iv[f]`` the reporting
    interval they were drawn from, reported with the visits it closes. ``fix_n[f]`` is how many fixes
    fix ``f`` stands for, and ``fix_since[f]`` since when the officer has been seen without a break up to
    it (its own ts; for the end of a stay point, kernels/stays.py, the stay's first fix): silence is
    measured from the open visit's last fix to ``fix_since[f]``.

    Writes the new state to ``n_*`` (``n_fresh``: the row's visit opened in
    this call) and closed visits to ``c_*``. Returns
    (n_open, n_closed, bad_fix): bad_fix is the first fix older than its
    officer's open visits, -1 when none.
    """
    n_state = s_off.shape[0]
    n_groups = g_off.shape[0]
    # Scratch for one officer's open visits: its state rows plus every
    # inside pair of its fixes (each can open at most one visit).
    most = 0
    s = 0
    for g in range(n_groups):
        o = g_off[g]
        while s < n_state and s_off[s] < o:
            s += 1
        cnt = 0
        while s < n_state and s_off[s] == o:
            cnt += 1
            s += 1
        for p in range(pair_ptr[g_start[g]], pair_ptr[g_end[g]]):
            if pair_inside[p]:
                cnt += 1
        most = max(most, cnt)
    a_hot = np.empty(most, np.int32)
    a_start = np.empty(most, np.int64)
    a_in = np.empty(most, np.int64)
    a_seen = np.empty(most, np.int64)
    a_out = np.empty(most, np.int64)
    a_after = np.empty(most, np.int64)
    a_n = np.empty(most, np.int32)
    b_hot = np.empty(most, np.int32)
    b_start = np.empty(most, np.int64)
    b_in = np.empty(most, np.int64)
    b_seen = np.empty(most, np.int64)
    b_out = np.empty(most, np.int64)
    b_after = np.empty(most, np.int64)
    b_n = np.empty(most, np.int32)
    a_fresh = np.empty(most, np.bool_)
    b_fresh = np.empty(most, np.bool_)

    nn = 0
    nc = 0
    s = 0
    for g in range(n_groups):
        o = g_off[g]
        # Officers without fixes in this batch keep their open visits as is.
        while s < n_state and s_off[s] < o:
            n_off[nn] = s_off[s]
            _copy_row(n_hot, n_start, n_in, n_seen, n_out, n_after, n_n, nn,
                      s_hot, s_start, s_in, s_seen, s_out, s_after, s_n, s)  # fmt: skip
            n_fresh[nn] = False
            nn += 1
            s += 1
        na = 0
        while s < n_state and s_off[s] == o:
            _copy_row(a_hot, a_start, a_in, a_seen, a_out, a_after, a_n, na,
                      s_hot, s_start, s_in, s_seen, s_out, s_after, s_n, s)  # fmt: skip
            a_fresh[na] = False
            na += 1
            s += 1
        for f in range(g_start[g], g_end[g]):
            t = fix_ts[f]
            max_gap_ms = fix_gap[f]
            grace_ms = fix_grace[f]
            pe = pair_ptr[f + 1]
            p = pair_ptr[f]
            a = 0
            nb = 0
            # Merge the open visits with this fix's pairs, both by hotspot.
            while a < na or p < pe:
                if a < na and (p >= pe or a_hot[a] <= pair_hot[p]):
                    if t < a_seen[a]:
                        return nn, nc, f
                    has_pair = p < pe and a_hot[a] == pair_hot[p]
                    # The first fix after the last inside one (this one, if
                    # none came between).
                    after = a_after[a] if a_after[a] != NO_TS_MS else t
                    closed = False
                    if fix_since[f] - a_seen[a] > max_gap_ms:
                        closed = True  # silence is not presence
                    elif has_pair and a_out[a] != NO_TS_MS and t - a_out[a] >= grace_ms:
                        closed = True  # back, but away for the grace or more
                    elif has_pair:
                        b_out[nb] = NO_TS_MS
                        if pair_inside[p]:
                            b_in[nb] = t
                            b_after[nb] = NO_TS_MS
                            b_n[nb] = a_n[a] + fix_n[f]
                        else:
                            b_in[nb] = a_in[a]
                            b_after[nb] = after
                            b_n[nb] = a_n[a]
                    else:
                        out = a_out[a] if a_out[a] != NO_TS_MS else t
                        if t - out >= grace_ms:
                            closed = True
                        else:
                            b_out[nb] = out
                            b_in[nb] = a_in[a]
                            b_after[nb] = after
                            b_n[nb] = a_n[a]
                    if closed:
                        c_off[nc] = o
                        c_hot[nc] = a_hot[a]
                        c_start[nc] = a_start[a]
                        c_end[nc] = _midway(a_in[a], after, max_gap_ms, midpoint)
                        c_n[nc] = a_n[a]
                        c_iv[nc] = fix_iv[f]
                        c_gap[nc] = max_gap_ms
                        nc += 1
                        # After a gap or an excursion, a fix inside opens the
                        # next visit.
                        if has_pair and pair_inside[p]:
                            _open_row(b_hot, b_start, b_in, b_seen, b_out, b_after, b_n, nb,
                                      a_hot[a], t, fix_prev[f], max_gap_ms, midpoint, fix_n[f])  # fmt: skip
                            b_fresh[nb] = True
                            nb += 1
                    else:
                        b_hot[nb] = a_hot[a]
                        b_start[nb] = a_start[a]
                        b_seen[nb] = t
                        b_fresh[nb] = a_fresh[a]
                        nb += 1
                    a += 1
                    if has_pair:
                        p += 1
                else:
                    # A pair with no open visit: only the polygon opens one.
                    if pair_inside[p]:
                        _open_row(b_hot, b_start, b_in, b_seen, b_out, b_after, b_n, nb,
                                  pair_hot[p], t, fix_prev[f], max_gap_ms, midpoint, fix_n[f])  # fmt: skip
                        b_fresh[nb] = True
                        nb += 1
                    p += 1
            a_hot, b_hot = b_hot, a_hot
            a_start, b_start = b_start, a_start
            a_in, b_in = b_in, a_in
            a_seen, b_seen = b_seen, a_seen
            a_out, b_out = b_out, a_out
            a_after, b_after = b_after, a_after
            a_n, b_n = b_n, a_n
            a_fresh, b_fresh = b_fresh, a_fresh
            na = nb
        for a in range(na):
            n_off[nn] = o
            _copy_row(n_hot, n_start, n_in, n_seen, n_out, n_after, n_n, nn,
                      a_hot, a_start, a_in, a_seen, a_out, a_after, a_n, a)  # fmt: skip
            n_fresh[nn] = a_fresh[a]
            nn += 1
    while s < n_state:
        n_off[nn] = s_off[s]
        _copy_row(n_hot, n_start, n_in, n_seen, n_out, n_after, n_n, nn,
                  s_hot, s_start, s_in, s_seen, s_out, s_after, s_n, s)  # fmt: skip
        n_fresh[nn] = False
        nn += 1
        s += 1
    return nn, nc, -1
