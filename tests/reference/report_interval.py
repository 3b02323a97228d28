"""Obviously-correct reporting-interval estimate: a list of each officer's gaps, sorted on demand.

The oracle for :func:`kernels.report_interval.estimate_intervals`.
"""

from __future__ import annotations

WINDOW = 9
MIN_GAPS = 3


class ReferenceIntervals:
    def __init__(self) -> None:
        self.gaps: dict[int, list[int]] = {}

    def estimate(self, officer: int) -> int:
        last = self.gaps.get(officer, [])[-WINDOW:]
        if len(last) < MIN_GAPS:
            return 0
        return sorted(last)[(len(last) - 1) // 2]

    def push(self, officer: int, prev_ts: int | None, ts: int) -> int:
        """The estimate before this fix, then its gap recorded."""
        before = self.estimate(officer)
        if prev_ts is not None:
            self.gaps.setdefault(officer, []).append(min(ts - prev_ts, 2**31 - 1))
        return before
