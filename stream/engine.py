"""The pure engine core: fixes in, visits out, with state kept between batches.

The file replay and the Kafka stream both drive this class, so they give the
same visits on the same input. One batch is: project -> order (reorder
buffer, duplicates, late, impossible speed) -> estimate each officer's
reporting interval -> (adaptive rules) gather stay points, holding a stay's
fixes until it ends -> locate against the hot spots grown by the exit margin
-> advance every officer's visit state. Every step is a kernel over arrays;
nothing here loops per fix. The live view (open visits) releases held
stays on copies, so it is what a replay of the fixes so far gives.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from geo.hotspots import HotspotSet
from kernels import ordering, reasons, report_interval, stays
from kernels import visits as visit_kernels
from kernels._checks import seconds_to_ms
from stream.fixes import FixColumns, Rejects
from stream.rules import SCALINGS, OfficerLimits, RuleSettings  # noqa: F401 - re-exported


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


# No new fixes, for a call that only releases what stays hold.
_NO_FIXES = tuple(np.empty(0, d) for d in (np.int32, np.int64, np.float64, np.float64, np.float64, np.float64,
                                           np.int64))


def _member(codes: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of ``codes`` are in ``sorted_set`` (sorted, unique): a binary search, not a hash per code."""
    if not sorted_set.size:
        return np.zeros(codes.shape, bool)
    at = np.minimum(np.searchsorted(sorted_set, codes), sorted_set.size - 1)
    return sorted_set[at] == codes


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
        self._stays = stays.empty_stay_state()
        self._carried = Visits.empty()  # closed while restoring, out with the next step
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
        """End of input: release the reorder buffer and the stays and close every open visit."""
        result = self.release_pending()
        held = self._release_stays(self._stays.officer)
        last = self._close(self._visits)
        self._visits = visit_kernels.empty_visit_state()
        self.opened_rows = np.empty(0, np.int64)
        return StepResult(Visits.concat([result.visits, held, last]), result.rejects)

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
        held = self._release_stays(self._silent_stays(watermark_ms))
        released = StepResult(Visits.concat([released.visits, held]), released.rejects)
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
        candidates = np.concatenate([self._visits.officer, self._ordering.pending_officer, self._stays.officer])
        return int(seen[candidates].min()) if candidates.size else None

    def close_stale(self, watermark_ms: int) -> Visits:
        """Close visits whose officer has been silent for over his gap limit before ``watermark_ms`` (his held
        stay first)."""
        held = self._release_stays(self._silent_stays(watermark_ms))
        iv = self.officer_intervals(self._visits.officer)
        gap = self.limits.gap(iv)
        # An officer whose newer fixes are held in a stay is not silent, however old his visits' last fix.
        holding = _member(self._visits.officer, self._stays.officer)
        gap[holding] = np.iinfo(np.int64).max // 4
        self._visits, closed = visit_kernels.close_stale(self._visits, watermark_ms, max_gap_s=self.rules.max_gap_s,
                                                         bounds=self.rules.visit_bounds, gap_limit_ms=gap,
                                                         interval_ms=iv)
        self.opened_rows = np.empty(0, np.int64)
        return Visits.concat([held, Visits(*closed)])

    def export_state(self) -> dict[str, np.ndarray]:
        """Every state array, by name, for a checkpoint."""
        out = {"ordering_" + k: v for k, v in self._ordering._asdict().items()}
        out.update({"visits_" + k: v for k, v in self._visits._asdict().items()})
        out.update({"intervals_" + k: v for k, v in self._intervals._asdict().items()})
        out.update({"stays_" + k: v for k, v in self._stays._asdict().items()})
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
        # A state saved before stay points holds none.
        self._stays = (stays.StayState(*(np.array(arrays["stays_" + f]) for f in stays.StayState._fields))
                       if "stays_officer" in arrays else stays.empty_stay_state())
        self.opened_rows = np.empty(0, np.int64)
        self._carried = Visits.empty()
        if not self.limits.stays and len(self._stays.officer):
            # Saved with stay points, restored without: what they held goes on now, before any new fix; the
            # visits that closes come out with the next step's.
            self._carried = self._release_stays(self._stays.officer)

    def open_visits(self, live: bool = True) -> Visits:
        """Visits open now, as a replay of the fixes so far would leave them (the live view): a held stay
        counts as ended at its newest fix. ``live=False``: only what the released fixes have opened."""
        state = self._provisional_state() if live else self._visits
        iv = self.officer_intervals(state.officer)
        return Visits(state.officer, state.hotspot, state.start_ms, state.last_in_ms, state.n_fixes, iv,
                      self.limits.gap(iv))

    def opened_visits(self) -> Visits:
        """The open visits that the last step opened (the stream's ``visit.opened`` events). A held stay's
        visit is announced when the stay is released, not from the live view: the live view may still move
        it (another start, another hot spot), and every visit announced open must come to close."""
        return self._open_rows(self._visits, self.opened_rows)

    def _provisional_state(self) -> visit_kernels.VisitState:
        """The open visits after a final release of every held stay, on copies: nothing here changes. Only
        the officers with a held stay are run again."""
        visits, held = self._visits, self._stays.officer
        if not len(held):
            return visits
        _, items = stays.advance_stays(self._stays, *_NO_FIXES, final_all=True, **self._stay_rules)
        mine = _member(visits.officer, held)
        theirs, _, _ = self._visit_items(items, visit_kernels.VisitState(*(a[mine] for a in visits)))
        merged = [np.concatenate([a[~mine], b]) for a, b in zip(visits, theirs)]
        order = np.lexsort((merged[1], merged[0]))
        return visit_kernels.VisitState(*(a[order] for a in merged))

    def _open_rows(self, state, rows) -> Visits:
        iv = self.officer_intervals(state.officer[rows])
        return Visits(state.officer[rows], state.hotspot[rows], state.start_ms[rows], state.last_in_ms[rows],
                      state.n_fixes[rows], iv, self.limits.gap(iv))

    def _silent_stays(self, watermark_ms: int) -> np.ndarray:
        """Officers with a held stay silent for more than their gap limit at ``watermark_ms``."""
        off = self._stays.officer
        return off[self._ordering.max_seen_ts_ms[off] < watermark_ms - self.limits.gap(self.officer_intervals(off))]

    def _release_stays(self, officers: np.ndarray) -> Visits:
        """Release everything held for ``officers`` (sorted) into their visits; the visits that closed."""
        if not len(officers):
            return Visits.empty()
        self._stays, items = stays.advance_stays(self._stays, *_NO_FIXES, final_officers=officers,
                                                 **self._stay_rules)
        self._visits, closed, _ = self._visit_items(items, self._visits)
        return Visits(*closed)

    @property
    def _stay_rules(self) -> dict:
        # Stays off (a state saved with them, released once): the defaults decide what was held.
        r = self.rules if self.limits.stays else RuleSettings()
        return dict(min_fixes=r.stay_min_fixes, max_misses=r.stay_max_misses)

    def _visit_items(self, items: stays.StayItems, state):
        """Advance ``state`` over stay items: a fix as it is, a stay as a fix at its centroid at its first fix
        (standing for all but one of its fixes) and another at its last, seen without a break since the
        first. Returns (new state, closed, opened rows)."""
        k = len(items.ts_ms)
        is_stay = items.n_fixes > 1
        reps = np.where(is_stay, 2, 1)
        item = np.repeat(np.arange(k), reps)
        end = np.zeros(item.size, bool)
        end[(np.cumsum(reps) - 1)[is_stay]] = True
        ts = np.where(end, items.end_ms[item], items.ts_ms[item])
        fixes = ordering.ReleasedFixes(items.officer[item], ts, items.x_m[item], items.y_m[item],
                                       np.zeros(item.size, np.int64), items.accuracy_m[item],
                                       np.where(end, items.ts_ms[item], items.prev_ms[item]))
        iv = np.where(end, items.end_interval_ms[item], items.interval_ms[item])
        n = np.where(end, 1, items.n_fixes[item] - is_stay[item]).astype(np.int32)
        since = np.where(end, items.ts_ms[item], ts)
        pair_fix, pair_hotspot, pair_inside = self.hotspots.locate_metric(
            fixes.x_m, fixes.y_m, margin_m=self.limits.margin(fixes.accuracy_m))
        return visit_kernels.advance_released(
            state, fixes, pair_fix, pair_hotspot, pair_inside, fix_gap_ms=self.limits.gap(iv),
            fix_grace_ms=self.limits.grace(iv), fix_interval_ms=iv, midpoint=self._midpoint, fix_n=n,
            fix_since_ms=since)

    def _advance(self, officer, ts_ms, x, y, row, *, flush: bool, flush_before_ms: int | None = None,
                 accuracy_m=None) -> StepResult:
        r = self.rules
        self._ordering, released, rejected = ordering.order_fixes(
            self._ordering, officer, ts_ms, x, y, row, reorder_window_s=r.reorder_window_s,
            max_speed_mps=r.max_speed_mps, max_gap_s=r.max_gap_s, flush=flush, flush_before_ms=flush_before_ms,
            inplace=True, accuracy_m=accuracy_m)
        self._intervals, iv = report_interval.estimate_released(self._intervals, released)
        if self.limits.stays:
            # Held until their stay is decided; the items now decided go on to the visits.
            accuracy = np.where(np.isnan(released.accuracy_m), r.default_accuracy_m, released.accuracy_m)
            self._stays, items = stays.advance_stays(
                self._stays, released.officer, released.ts_ms, released.x_m, released.y_m, accuracy,
                self.limits.stay_radius(accuracy, iv), self.limits.gap(iv), prev_ms=released.prev_ts_ms,
                interval_ms=iv, **self._stay_rules)
            self._visits, closed, self.opened_rows = self._visit_items(items, self._visits)
        else:
            pair_fix, pair_hotspot, pair_inside = self.hotspots.locate_metric(
                released.x_m, released.y_m, margin_m=self.limits.margin(released.accuracy_m))
            # Released fixes and located pairs already have the shape the visit kernel needs: no re-checks.
            self._visits, closed, self.opened_rows = visit_kernels.advance_released(
                self._visits, released, pair_fix, pair_hotspot, pair_inside, fix_gap_ms=self.limits.gap(iv),
                fix_grace_ms=self.limits.grace(iv), fix_interval_ms=iv, midpoint=self._midpoint)
        # The ordering kernel reports codes of the shared table (kernels.reasons).
        rejects = Rejects(np.asarray(rejected.row, np.int64), np.asarray(rejected.reason, np.int8))
        closed, self._carried = Visits.concat([self._carried, Visits(*closed)]), Visits.empty()
        return StepResult(closed, rejects)
