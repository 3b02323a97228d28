"""Union of time intervals per group, and its length inside query windows.

Presence (patrol-minutes) of a hot spot is the length of the union of every
officer's visits; two officers together for 15 minutes are 15 minutes of
presence, not 30. The same union, clipped to a window, gives presence in a
policing day or in a scheduled patrol window.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS


class MergedIntervals(NamedTuple):
    """Disjoint intervals sorted by (group, start), with running length.

    ``cum_ms[i]`` is the total length of intervals ``0..i-1`` of the same
    group, so the union length up to any point is one binary search away.
    """

    group: np.ndarray  # int64 (m,)
    start_ms: np.ndarray  # int64 (m,)
    end_ms: np.ndarray  # int64 (m,)
    cum_ms: np.ndarray  # int64 (m,)


@njit(**JIT_OPTIONS)
def _merge_kernel(group, start, end, out_g, out_s, out_e, out_c):
    m = -1
    for i in range(group.shape[0]):
        g, s, e = group[i], start[i], end[i]
        if m >= 0 and out_g[m] == g and s <= out_e[m]:
            if e > out_e[m]:
                out_e[m] = e
            continue
        m += 1
        out_g[m] = g
        out_s[m] = s
        out_e[m] = e
        if m > 0 and out_g[m - 1] == g:
            out_c[m] = out_c[m - 1] + (out_e[m - 1] - out_s[m - 1])
        else:
            out_c[m] = 0
    return m + 1


def merge_intervals(group: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray) -> MergedIntervals:
    """Merge intervals into their union per group.

    Parameters
    ----------
    group : ndarray of int64, shape (n,)
        Group key (hot spot index, or a hot spot-day key).
    start_ms, end_ms : ndarray of int64, shape (n,)
        Closed intervals in epoch milliseconds, ``end_ms >= start_ms``.
        Touching intervals merge.

    Returns
    -------
    MergedIntervals
        Disjoint, sorted intervals; zero-length ones are kept (they carry no
        length but mark presence at an instant).
    """
    group = np.ascontiguousarray(group, dtype=np.int64)
    start_ms = np.ascontiguousarray(start_ms, dtype=np.int64)
    end_ms = np.ascontiguousarray(end_ms, dtype=np.int64)
    if not (group.shape == start_ms.shape == end_ms.shape) or group.ndim != 1:
        raise ValueError(f"group, start_ms, end_ms must be 1-d of one length, got "
                         f"{group.shape}, {start_ms.shape}, {end_ms.shape}")
    if np.any(end_ms < start_ms):
        bad = int(np.flatnonzero(end_ms < start_ms)[0])
        raise ValueError(f"interval {bad} ends before it starts ({start_ms[bad]} > {end_ms[bad]})")
    order = np.lexsort((start_ms, group))
    n = group.shape[0]
    out = MergedIntervals(np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
                          np.empty(n, np.int64))
    m = _merge_kernel(group[order], start_ms[order], end_ms[order], *out)
    return MergedIntervals(*(a[:m] for a in out))


@njit(**JIT_OPTIONS)
def _covered_before(m_group, m_start, m_end, m_cum, lo, hi, t):
    # Union length of one group's intervals (rows lo..hi-1) before time t.
    a, b = lo, hi
    while a < b:  # first interval starting at or after t
        mid = (a + b) // 2
        if m_start[mid] < t:
            a = mid + 1
        else:
            b = mid
    if a == lo:
        return np.int64(0)
    k = a - 1
    return m_cum[k] + (min(t, m_end[k]) - m_start[k])


@njit(**JIT_OPTIONS)
def _within_kernel(m_group, m_start, m_end, m_cum, q_group, q_start, q_end, out):
    for i in range(q_group.shape[0]):
        g = q_group[i]
        # Rows of group g: binary search on the sorted group column.
        a, b = 0, m_group.shape[0]
        while a < b:
            mid = (a + b) // 2
            if m_group[mid] < g:
                a = mid + 1
            else:
                b = mid
        lo = a
        b = m_group.shape[0]
        while a < b:
            mid = (a + b) // 2
            if m_group[mid] <= g:
                a = mid + 1
            else:
                b = mid
        hi = a
        if lo == hi or q_end[i] <= q_start[i]:
            out[i] = 0
            continue
        out[i] = (_covered_before(m_group, m_start, m_end, m_cum, lo, hi, q_end[i])
                  - _covered_before(m_group, m_start, m_end, m_cum, lo, hi, q_start[i]))


def union_length_within(merged: MergedIntervals, q_group: np.ndarray, q_start_ms: np.ndarray,
                        q_end_ms: np.ndarray) -> np.ndarray:
    """Length of each group's union inside each query window.

    Parameters
    ----------
    merged : MergedIntervals
        From :func:`merge_intervals`.
    q_group : ndarray of int64, shape (q,)
        Group of each window.
    q_start_ms, q_end_ms : ndarray of int64, shape (q,)
        Half-open windows ``[start, end)`` in epoch milliseconds.

    Returns
    -------
    ndarray of int64, shape (q,)
        Milliseconds of the union inside each window.
    """
    q_group = np.ascontiguousarray(q_group, dtype=np.int64)
    q_start_ms = np.ascontiguousarray(q_start_ms, dtype=np.int64)
    q_end_ms = np.ascontiguousarray(q_end_ms, dtype=np.int64)
    if not (q_group.shape == q_start_ms.shape == q_end_ms.shape):
        raise ValueError("q_group, q_start_ms, q_end_ms must have one length")
    out = np.empty(q_group.shape[0], np.int64)
    _within_kernel(merged.group, merged.start_ms, merged.end_ms, merged.cum_ms, q_group, q_start_ms, q_end_ms,
                   out)
    return out
