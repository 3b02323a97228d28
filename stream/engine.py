"""The pure engine core: fixes in, visits out, with state kept between batches.

The file replay and the Kafka stream both drive this class, so they give the
same visits on the same input. One batch is: project -> order (reorder
buffer, duplicates, late, impossible speed) -> locate against the hot spots
grown by the exit margin -> advance every officer's visit state. Every step
is a kernel over arrays; nothing here loops per fix.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from geo.hotspots import HotspotSet
from kernels import ordering, reasons, report_interval
from kernels import visits as visit_kernels
from kernels._checks import seconds_to_ms
from stream.fixes import FixColumns, Rejects


@dataclass(frozen=True)
class RuleSettings:
    """Every threshold of the dwell rules, with its unit in its name.

    The defaults follow the field numbers in the design (radios report every
    5-60 s with 5-30 m of error in streets; a patrol is 15 minutes); margin
    and grace were chosen against simulated ground truth by
    benchmarks/bench_accuracy.py.
    """

    max_gap_s: float = 180.0
    exit_margin_m: float = 10.0
    exit_grace_s: float = 120.0
    # "adaptive": each officer's gap limit and exit grace follow his own reporting interval (the median of
    # his last nine gaps, kernels/report_interval.py) and each fix's exit margin its stated accuracy;
    # "fixed": the three values above for every radio and fix.
    scaling: str = "adaptive"
    # The numbers below come from the grid study (benchmarks/results/accuracy-grid-study): over reporting
    # every 10-120 s with 5-50 m of error they stay within about half a point of the best fixed setting of
    # each condition. Adaptive gap limit: at least this many of the officer's intervals, never below
    # max_gap_s (at 120 s anything under 420 s splits patrols at two lost reports).
    max_gap_intervals: float = 4.0
    # Adaptive exit grace: this many of the officer's intervals (about five outside fixes forgiven, the
    # half interval keeps it off the knife edge of whole intervals), at most max_exit_grace_s (more only
    # adds false patrols at slow radios); exit_grace_s until his interval is known.
    exit_grace_intervals: float = 5.5
    max_exit_grace_s: float = 390.0
    # Adaptive exit margin: this many times the fix's stated accuracy (default_accuracy_m when it states
    # none), at most max_exit_margin_m. 0 by default: with 150 m hot spots that touch, a margin that grows
    # with the error keeps stray visits open in the neighbouring cell, and the grace buys the same recall
    # with fewer false patrols.
    exit_margin_accuracies: float = 0.0
    default_accuracy_m: float = 10.0
    max_exit_margin_m: float = 50.0
    min_patrol_s: float = 900.0
    max_speed_mps: float = 50.0
    reorder_window_s: float = 60.0
    visit_bounds: str = "midpoint"
    day_start: str = "06:00"
    timezone: str = "Europe/London"

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {v}")
        if self.max_speed_mps <= 0:
            raise ValueError("max_speed_mps must be > 0")
        if self.visit_bounds not in visit_kernels.BOUNDS:
            raise ValueError(f"visit_bounds must be one of {visit_kernels.BOUNDS}, got {self.visit_bounds!r}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")


SCALINGS = ("adaptive", "fixed")


class OfficerLimits:
    """The gap limit and exit grace that apply to each fix, from the officer's reporting interval, and the
    exit margin, from the fix's stated accuracy.

    Milliseconds and metres; with ``scaling="fixed"`` the fixed values whatever the evidence.
    """

    def __init__(self, rules: RuleSettings) -> None:
        self.margin_m = rules.exit_margin_m
        self.margin_accuracies = rules.exit_margin_accuracies
        self.default_accuracy_m = rules.default_accuracy_m
        self.max_margin_m = rules.max_exit_margin_m
        self.gap_ms = seconds_to_ms(rules.max_gap_s, "max_gap_s")
        self.grace_ms = seconds_to_ms(rules.exit_grace_s, "exit_grace_s")
        self.max_grace_ms = seconds_to_ms(rules.max_exit_grace_s, "max_exit_grace_s")
        self.adaptive = rules.scaling == "adaptive"
        self.gap_intervals = rules.max_gap_intervals
        self.grace_intervals = rules.exit_grace_intervals

    def gap(self, interval_ms: np.ndarray) -> np.ndarray:
        if not self.adaptive:
            return np.full(interval_ms.shape, self.gap_ms, np.int64)
        return np.maximum(self.gap_ms, np.round(interval_ms * self.gap_intervals).astype(np.int64))

    def margin(self, accuracy_m: np.ndarray) -> float | np.ndarray:
        """The exit margin of each fix, metres (one number when it is the same for every fix)."""
        if not self.adaptive:
            return self.margin_m
        if self.margin_accuracies == 0:
            return 0.0
        stated = np.where(np.isnan(accuracy_m), self.default_accuracy_m, accuracy_m)
        return np.minimum(stated * self.margin_accuracies, self.max_margin_m)

    def grace(self, interval_ms: np.ndarray) -> np.ndarray:
        """Interval 0 (not yet known): the fixed grace."""
        if not self.adaptive:
            return np.full(interval_ms.shape, self.grace_ms, np.int64)
        scaled = np.minimum(self.max_grace_ms, np.round(interval_ms * self.grace_intervals).astype(np.int64))
        return np.where(interval_ms > 0, scaled, self.grace_ms)


class Visits(NamedTuple):
    """Closed (or, for the live view, open) visits; hot spots by index."""

    officer: np.ndarray  # int64 officer code
    hotspot: np.ndarray  # int64 hot spot index
    start_ms: np.ndarray  # int64, first inside fix (or midway back to the fix before it)
    end_ms: np.ndarray  # int64, last inside fix (or midway on to the fix after it)
    n_fixes: np.ndarray  # int64, fixes inside the polygon
    interval_ms: np.ndarray  # int64, the officer's reporting-interval estimate when it closed (0: unknown)
    gap_limit_ms: np.ndarray  # int64, the gap limit it closed under

    @staticmethod
    def empty() -> "Visits":
        e = np.empty(0, np.int64)
        return Visits(e, e, e, e, e, e, e)

    @staticmethod
    def concat(parts: list["Visits"]) -> "Visits":
        if not parts:
            return Visits.empty()
        return Visits(*(np.concatenate([getattr(p, f) for p in parts]).astype(np.int64) for f in Visits._fields))

    def sorted(self) -> "Visits":
        order = np.lexsort((self.hotspot, self.officer, self.start_ms))
        return Visits(*(a[order] for a in self))


class StepResult(NamedTuple):
    visits: Visits  # visits that closed in this step
    rejects: Rejects  # fixes dropped by the ordering rules


class DwellEngine:
    """Officers' visits to hot spots, advanced batch by batch.

    Parameters
    ----------
    hotspots : HotspotSet
        The hot spots, already projected to their metric CRS.
    rules : RuleSettings
        Thresholds of the dwell rules.
    """

    def __init__(self, hotspots: HotspotSet, rules: RuleSettings = RuleSettings()) -> None:
        self.hotspots = hotspots
        self.rules = rules
        self._ordering = ordering.empty_ordering_state()
        self._intervals = report_interval.empty_interval_state()
        self._visits = visit_kernels.empty_visit_state()
        self.opened_rows = np.empty(0, np.int64)  # rows of open_visits() that the last step opened
        self.limits = OfficerLimits(rules)
        self._midpoint = rules.visit_bounds == "midpoint"

    def step(self, fixes: FixColumns) -> StepResult:
        """Advance the state with one batch of fixes in arrival order."""
        x, y = self.hotspots.project(fixes.lon, fixes.lat)
        projected = np.isfinite(x) & np.isfinite(y)
        if projected.all():
            return self._advance(fixes.officer, fixes.ts_ms, x, y, fixes.row, flush=False, accuracy_m=fixes.accuracy_m)
        # Valid WGS84 that the metric CRS cannot represent: rejected, not
        # silently treated as "outside every hot spot".
        out = self._advance(fixes.officer[projected], fixes.ts_ms[projected], x[projected], y[projected],
                            fixes.row[projected], flush=False, accuracy_m=fixes.accuracy_m[projected])
        bad = fixes.row[~projected]
        return StepResult(out.visits, Rejects.concat([
            out.rejects, Rejects(bad, np.full(bad.shape[0], reasons.OUTSIDE_CRS, np.int8))]))

    def finish(self) -> StepResult:
        """End of input: release the reorder buffer and close every open visit."""
        result = self.release_pending()
        last = self._close(self._visits)
        self._visits = visit_kernels.empty_visit_state()
        self.opened_rows = np.empty(0, np.int64)
        return StepResult(Visits.concat([result.visits, last]), result.rejects)

    def officer_intervals(self, officer: np.ndarray) -> np.ndarray:
        """The officers' reporting-interval estimates now (int64 ms, 0: unknown)."""
        return report_interval.current_intervals(self._intervals, officer)

    def _close(self, state) -> Visits:
        """Close ``state``'s visits as the end of a replay does, under each officer's gap limit now."""
        iv = self.officer_intervals(state.officer)
        return Visits(*visit_kernels.close_all(state, bounds=self.rules.visit_bounds, gap_limit_ms=self.limits.gap(iv),
                                               interval_ms=iv))

    def release_pending(self) -> StepResult:
        """Release the whole reorder buffer now (the day is over; nothing older will come in order)."""
        e = np.empty(0, np.int64)
        f = np.empty(0, np.float64)
        return self._advance(e, e, f, f, e, flush=True)

    def close_silent(self, watermark_ms: int) -> StepResult:
        """End the visits of the officers silent for more than their gap limit at ``watermark_ms``.

        The buffered fixes of officers silent for the fixed ``max_gap_s`` (every gap limit is at least
        that) are released first: nothing the buffer could still put before them will come in order
        now. Then the visits of those silent for their own gap limit (from their interval estimate
        with those fixes' gaps) close with the bounds the end of a replay gives them. Everyone else
        keeps his buffer and visits as they are.
        """
        e = np.empty(0, np.int64)
        f = np.empty(0, np.float64)
        released = self._advance(e, e, f, f, e, flush=False, flush_before_ms=watermark_ms - self.limits.gap_ms)
        state = self._visits
        iv = self.officer_intervals(state.officer)
        silent = self._ordering.max_seen_ts_ms[state.officer] < watermark_ms - self.limits.gap(iv)
        self.opened_rows = np.empty(0, np.int64)
        if not silent.any():
            return released
        self._visits = visit_kernels.VisitState(*(a[~silent] for a in state))
        closed = self._close(visit_kernels.VisitState(*(a[silent] for a in state)))
        return StepResult(Visits.concat([released.visits, closed]), released.rejects)

    def newest_fix_floor_ms(self) -> int | None:
        """The oldest newest-fix time among the officers with an open visit or a buffered fix (None when
        there are none): no officer can be found silent before event time passes it."""
        seen = self._ordering.max_seen_ts_ms
        candidates = np.concatenate([self._visits.officer, self._ordering.pending_officer])
        return int(seen[candidates].min()) if candidates.size else None

    def close_stale(self, watermark_ms: int) -> Visits:
        """Close visits whose officer has been silent for over his gap limit before ``watermark_ms``."""
        iv = self.officer_intervals(self._visits.officer)
        self._visits, closed = visit_kernels.close_stale(self._visits, watermark_ms, max_gap_s=self.rules.max_gap_s,
                                                         bounds=self.rules.visit_bounds,
                                                         gap_limit_ms=self.limits.gap(iv), interval_ms=iv)
        self.opened_rows = np.empty(0, np.int64)
        return Visits(*closed)

    def export_state(self) -> dict[str, np.ndarray]:
        """Every state array, by name, for a checkpoint."""
        out = {"ordering_" + k: v for k, v in self._ordering._asdict().items()}
        out.update({"visits_" + k: v for k, v in self._visits._asdict().items()})
        out.update({"intervals_" + k: v for k, v in self._intervals._asdict().items()})
        return out

    def import_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace the state with arrays from :meth:`export_state`."""
        if "ordering_pending_accuracy_m" not in arrays:  # saved before fixes carried their accuracy
            arrays = dict(arrays, ordering_pending_accuracy_m=np.full(arrays["ordering_pending_row"].shape, np.nan))
        self._ordering = ordering.OrderingState(*(np.array(arrays["ordering_" + f])
                                                  for f in ordering.OrderingState._fields))
        self._visits = visit_kernels.VisitState(*(np.array(arrays["visits_" + f])
                                                  for f in visit_kernels.VisitState._fields))
        # A state saved before the interval estimates: they start again from the next gaps.
        self._intervals = (report_interval.IntervalState(*(np.array(arrays["intervals_" + f])
                                                           for f in report_interval.IntervalState._fields))
                           if "intervals_n_gaps" in arrays else report_interval.empty_interval_state())
        self.opened_rows = np.empty(0, np.int64)

    def open_visits(self) -> Visits:
        """Visits still open, as of the last released fix (the live view)."""
        return self._open_rows(slice(None))

    def opened_visits(self) -> Visits:
        """The open visits that the last step opened (the stream's ``visit.opened`` events)."""
        return self._open_rows(self.opened_rows)

    def _open_rows(self, rows) -> Visits:
        s = self._visits
        iv = self.officer_intervals(s.officer[rows])
        return Visits(s.officer[rows], s.hotspot[rows], s.start_ms[rows], s.last_in_ms[rows], s.n_fixes[rows], iv,
                      self.limits.gap(iv))

    def _advance(self, officer, ts_ms, x, y, row, *, flush: bool, flush_before_ms: int | None = None,
                 accuracy_m=None) -> StepResult:
        r = self.rules
        self._ordering, released, rejected = ordering.order_fixes(
            self._ordering, officer, ts_ms, x, y, row, reorder_window_s=r.reorder_window_s,
            max_speed_mps=r.max_speed_mps, max_gap_s=r.max_gap_s, flush=flush, flush_before_ms=flush_before_ms,
            inplace=True, accuracy_m=accuracy_m)
        self._intervals, iv = report_interval.estimate_released(self._intervals, released)
        pair_fix, pair_hotspot, pair_inside = self.hotspots.locate_metric(
            released.x_m, released.y_m, margin_m=self.limits.margin(released.accuracy_m))
        # Released fixes and located pairs already have the shape the visit kernel needs: no re-checks.
        self._visits, closed, self.opened_rows = visit_kernels.advance_released(
            self._visits, released, pair_fix, pair_hotspot, pair_inside, fix_gap_ms=self.limits.gap(iv),
            fix_grace_ms=self.limits.grace(iv), fix_interval_ms=iv, midpoint=self._midpoint)
        # The ordering kernel reports codes of the shared table (kernels.reasons).
        rejects = Rejects(np.asarray(rejected.row, np.int64), np.asarray(rejected.reason, np.int8))
        return StepResult(Visits(*closed), rejects)
