"""Plain-Python union of intervals, clipped to a window (obviously correct, slow)."""

from __future__ import annotations


def union_length_within(intervals: list[tuple[int, int]], window_start: int, window_end: int) -> int:
    """Length of the union of closed intervals inside ``[window_start, window_end)``."""
    clipped = sorted((max(s, window_start), min(e, window_end)) for s, e in intervals
                     if min(e, window_end) > max(s, window_start))
    total = 0
    cur_s = cur_e = None
    for s, e in clipped:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total
