"""Stay points the plain way: the whole of each officer's fixes at once, greedy from the first undecided fix."""

from __future__ import annotations

import math


def reference_stays(fixes, min_fixes, max_misses):
    """``fixes``: one officer's (ts_ms, x_m, y_m, accuracy_m, radius_m, gap_ms, prev_ms, interval_ms) in time
    order.
    Items in time order: (ts_ms, end_ms, x_m, y_m, accuracy_m, n_fixes, prev_ms, interval_ms, end_interval_ms)."""
    items = []
    i, n = 0, len(fixes)
    while i < n:
        if fixes[i][4] == 0.0:  # no radius: no stay starts here
            ts, x, y, acc, _, _, prev, iv = fixes[i]
            items.append((ts, ts, x, y, acc, 1, prev, iv, iv))
            i += 1
            continue
        members = [i]
        sx, sy, sa = fixes[i][1], fixes[i][2], fixes[i][3]
        misses = 0
        for j in range(i + 1, n):
            ts, x, y, acc, radius, gap = fixes[j][:6]
            if ts - fixes[j - 1][0] > gap:
                break
            dx, dy = x - sx / len(members), y - sy / len(members)
            r = radius
            if r > 0 and dx * dx + dy * dy <= r * r:
                members.append(j)
                sx, sy, sa = sx + x, sy + y, sa + acc
                misses = 0
            else:
                misses += 1
                if misses > max_misses:
                    break
        m, last = len(members), members[-1]
        if m >= min_fixes:
            items.append((fixes[i][0], fixes[last][0], sx / m, sy / m, sa / m / math.sqrt(m), last - i + 1,
                          fixes[i][6], fixes[i][7], fixes[last][7]))
            i = last + 1
        else:
            ts, x, y, acc, _, _, prev, iv = fixes[i]
            items.append((ts, ts, x, y, acc, 1, prev, iv, iv))
            i += 1
    return items
