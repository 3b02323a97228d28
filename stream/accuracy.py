"""How well the dwell rules recover the simulator's ground truth.

The simulator knows where every officer really was (the noise-free path,
sampled every second); the engine only sees the noisy, sparse, partly dropped
fixes. :func:`true_visits` turns the true path into visits, :func:`reported_visits`
runs the engine core over the fixes, and :func:`score` matches the two:

* a true visit of ``min_true_s`` or more (16 minutes by default: a patrol with
  a minute of slack, so that a visit the rules could only just call a patrol
  is not counted against them) is *recovered* when a reported patrol of the
  same officer and hot spot is matched to it one-to-one and its start and end
  are each within ``tolerance_intervals`` reporting intervals of the truth;
* a reported patrol is *false* when no true visit of at least ``min_patrol_s``
  minus the tolerance is matched to it (an invented patrol, or the second
  half of a split one).

Nothing here imports Faust or Kafka: it is the pure core, run in a notebook,
a benchmark or a test.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from geo.hotspots import HotspotSet
from stream.engine import DwellEngine, RuleSettings, Visits
from stream.fixes import FixColumns, OfficerRegistry
from stream.simulate import SimulatedFixes

# The true path is sampled every 1000 ms (rounded to the ms); a step longer
# than this between inside samples means the officer left and came back.
_TRUE_STEP_BREAK_MS = 1500
# Batches as large as a replay chunk's worth of fixes, so the engine is
# driven the way the replay drives it (the kernels give the same visits for
# any cut, and a test checks it against the file replay).
_BATCH_FIXES = 65_536


def true_visits(sim: SimulatedFixes, hotspots: HotspotSet, registry: OfficerRegistry) -> Visits:
    """Visits of the noise-free path: maximal runs of 1 s samples inside a polygon.

    Computed directly from polygon containment of the true samples rather than
    by running the engine with zero margins: ground truth must not depend on
    the code under test (its ordering, speed and gap rules included), and on a
    noise-free path there is nothing for hysteresis to do. Overlapping hot
    spots each get their own visits, as in the engine (rule 11).

    Parameters
    ----------
    sim : SimulatedFixes
        A simulated day; only the ``true_*`` arrays are used.
    hotspots : HotspotSet
        The hot spots the day was simulated over.
    registry : OfficerRegistry
        Officer codes, shared with :func:`reported_visits` so the two sides
        can be matched.

    Returns
    -------
    Visits
        One row per true visit, start/end at the first/last inside sample
        (so accurate to one second), ``n_fixes`` the number of samples.
    """
    x, y = hotspots.project(sim.true_lon, sim.true_lat)
    fix, hot, inside = hotspots.locate_metric(x, y, 0.0)
    fix, hot = fix[inside], hot[inside]
    if fix.size == 0:
        return Visits.empty()
    officer_codes = _codes(registry, sim.true_officer_id)
    officer = officer_codes[fix]
    ts = sim.true_ts_ms[fix].astype(np.int64)
    order = np.lexsort((ts, hot, officer))
    officer, hot, ts = officer[order], hot[order].astype(np.int64), ts[order]
    new_run = np.ones(ts.size, bool)
    new_run[1:] = ((officer[1:] != officer[:-1]) | (hot[1:] != hot[:-1])
                   | (ts[1:] - ts[:-1] > _TRUE_STEP_BREAK_MS))
    first = np.flatnonzero(new_run)
    last = np.append(first[1:] - 1, ts.size - 1)
    none = np.zeros(first.size, np.int64)  # no radio, no interval or gap limit
    return Visits(officer[first], hot[first], ts[first], ts[last], (last - first + 1).astype(np.int64), none,
                  none).sorted()


def reported_visits(sim: SimulatedFixes, hotspots: HotspotSet, rules: RuleSettings,
                    registry: OfficerRegistry) -> Visits:
    """Visits the engine reports from the simulated fixes, in delivery order.

    The same core as ``stream.replay.replay`` with the CSV round trip left
    out: the simulator's coordinates already have the 6 decimals a CSV
    export carries, so the engine sees the same numbers.

    Parameters
    ----------
    sim : SimulatedFixes
        Noisy fixes (dropped, duplicated and late ones included) in the
        order they were delivered.
    hotspots : HotspotSet
        The hot spots.
    rules : RuleSettings
        The rule settings under test.
    registry : OfficerRegistry
        Officer codes, shared with :func:`true_visits`.

    Returns
    -------
    Visits
        Every reported visit (patrols and shorter ones), sorted.
    """
    n = len(sim)
    cols = FixColumns(np.arange(1, n + 1, dtype=np.int64), _codes(registry, sim.officer_id),
                      np.asarray(sim.ts_ms, np.int64), np.asarray(sim.lat, np.float64),
                      np.asarray(sim.lon, np.float64), np.asarray(sim.accuracy_m, np.float64))
    engine = DwellEngine(hotspots, rules)
    parts = [engine.step(cols.take(np.arange(i, min(i + _BATCH_FIXES, n)))).visits
             for i in range(0, n, _BATCH_FIXES)]
    parts.append(engine.finish().visits)
    return Visits.concat(parts).sorted()


def _codes(registry: OfficerRegistry, officer_ids: np.ndarray) -> np.ndarray:
    # Intern each distinct id once, not once per fix.
    uniq, inverse = np.unique(np.asarray(officer_ids, dtype=str), return_inverse=True)
    return registry.codes_of(list(uniq))[inverse].astype(np.int64)


@dataclass(frozen=True)
class AccuracyScore:
    """Reported patrols against true visits (see :func:`score`).

    Counts add up across days with :meth:`combine`; the error arrays hold one
    signed value (reported minus true, seconds) per matched long true visit.
    """

    tolerance_s: float
    n_true_long: int = 0  # true visits >= min_true_s
    n_recovered: int = 0  # matched, start and end within tolerance
    n_matched_off: int = 0  # matched, but start or end beyond tolerance
    n_missed_split: int = 0  # no patrol, but shorter reported visits overlap it
    n_missed_absent: int = 0  # nothing reported at all
    n_reported_patrols: int = 0
    n_false: int = 0  # patrols with no true visit of min_patrol_s - tolerance
    n_false_neighbour: int = 0  # ... while the officer truly dwelt in another hot spot
    n_borderline: int = 0  # matched to a true visit just short of min_patrol_s
    start_err_s: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    end_err_s: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def recall(self) -> float:
        """Share of long true visits recovered as patrols within tolerance."""
        return self.n_recovered / self.n_true_long if self.n_true_long else float("nan")

    @property
    def false_share(self) -> float:
        """Share of reported patrols that are false."""
        return self.n_false / self.n_reported_patrols if self.n_reported_patrols else 0.0

    @staticmethod
    def combine(scores: list[AccuracyScore]) -> AccuracyScore:
        """Pool the scores of several days (same tolerance)."""
        counts = {f: sum(getattr(s, f) for s in scores) for f in _COUNT_FIELDS}
        return AccuracyScore(scores[0].tolerance_s, **counts,
                             start_err_s=np.concatenate([s.start_err_s for s in scores]),
                             end_err_s=np.concatenate([s.end_err_s for s in scores]))

    def summary(self) -> dict[str, float]:
        """JSON-ready numbers: counts, recall, and |error| median and p95."""
        out: dict[str, float] = {f: int(getattr(self, f)) for f in _COUNT_FIELDS}
        out.update(tolerance_s=self.tolerance_s, recall=round(self.recall, 5),
                   false_share=round(self.false_share, 5))
        for name, err in (("start", self.start_err_s), ("end", self.end_err_s)):
            a = np.abs(err)
            out[f"{name}_abs_err_median_s"] = float(np.median(a)) if a.size else float("nan")
            out[f"{name}_abs_err_p95_s"] = float(np.percentile(a, 95)) if a.size else float("nan")
            out[f"{name}_err_median_s"] = float(np.median(err)) if a.size else float("nan")
        return out


_COUNT_FIELDS = ("n_true_long", "n_recovered", "n_matched_off", "n_missed_split", "n_missed_absent",
                 "n_reported_patrols", "n_false", "n_false_neighbour", "n_borderline")


def score(true: Visits, reported: Visits, interval_s: float, min_true_s: float = 960.0, *,
          min_patrol_s: float = 900.0, tolerance_intervals: float = 2.0) -> AccuracyScore:
    """Match reported patrols to true visits and score them.

    Parameters
    ----------
    true : Visits
        Ground-truth visits (:func:`true_visits`), any length.
    reported : Visits
        Reported visits (:func:`reported_visits` or a replay's
        ``raw_visits``), any length; those of ``min_patrol_s`` or more are
        the patrols. Officer codes must come from the same registry as
        ``true``'s.
    interval_s : float
        The radios' reporting interval; the tolerance is
        ``tolerance_intervals * interval_s``.
    min_true_s : float, default 960
        True visits this long must be recovered (16 minutes).
    min_patrol_s : float, default 900
        The patrol threshold the rules used.
    tolerance_intervals : float, default 2
        Allowed start and end error, in reporting intervals.

    Returns
    -------
    AccuracyScore

    Notes
    -----
    Matching is one-to-one within each (officer, hot spot): every
    overlapping (true visit, reported patrol) pair is a candidate, and pairs
    are taken greedily by overlap, largest first. A true visit split into two
    patrols thus gets the larger part; the other part is a false patrol.
    """
    tol_ms = tolerance_intervals * interval_s * 1000.0
    t_dur = true.end_ms - true.start_ms
    r_dur = reported.end_ms - reported.start_ms
    patrol = np.flatnonzero(r_dur >= min_patrol_s * 1000.0)
    by_key: dict[tuple[int, int], list[int]] = defaultdict(list)
    for j in patrol:
        by_key[(int(reported.officer[j]), int(reported.hotspot[j]))].append(int(j))
    candidates = []  # (overlap, true row, reported row)
    for i in range(true.start_ms.size):
        for j in by_key.get((int(true.officer[i]), int(true.hotspot[i])), ()):
            ov = min(true.end_ms[i], reported.end_ms[j]) - max(true.start_ms[i], reported.start_ms[j])
            if ov > 0:
                candidates.append((int(ov), i, j))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    match_of_true: dict[int, int] = {}
    match_of_rep: dict[int, int] = {}
    for _, i, j in candidates:
        if i not in match_of_true and j not in match_of_rep:
            match_of_true[i], match_of_rep[j] = j, i

    counts = dict.fromkeys(_COUNT_FIELDS, 0)
    start_err, end_err = [], []
    for i in np.flatnonzero(t_dur >= min_true_s * 1000.0):
        counts["n_true_long"] += 1
        j = match_of_true.get(int(i))
        if j is None:
            counts["n_missed_split" if _overlaps_any(true, reported, int(i)) else "n_missed_absent"] += 1
            continue
        ds, de = reported.start_ms[j] - true.start_ms[i], reported.end_ms[j] - true.end_ms[i]
        start_err.append(ds / 1000.0)
        end_err.append(de / 1000.0)
        counts["n_recovered" if abs(ds) <= tol_ms and abs(de) <= tol_ms else "n_matched_off"] += 1

    long_enough = min_patrol_s * 1000.0 - tol_ms
    counts["n_reported_patrols"] = int(patrol.size)
    for j in patrol:
        i = match_of_rep.get(int(j))
        if i is not None and t_dur[i] >= long_enough:
            counts["n_borderline"] += int(t_dur[i] < min_patrol_s * 1000.0)
            continue
        counts["n_false"] += 1
        counts["n_false_neighbour"] += int(_dwelt_elsewhere(true, reported, int(j), long_enough))
    return AccuracyScore(tol_ms / 1000.0, **counts, start_err_s=np.array(start_err, np.float64),
                         end_err_s=np.array(end_err, np.float64))


def _overlaps_any(true: Visits, reported: Visits, i: int) -> bool:
    same = (reported.officer == true.officer[i]) & (reported.hotspot == true.hotspot[i])
    return bool(np.any(same & (reported.start_ms <= true.end_ms[i]) & (reported.end_ms >= true.start_ms[i])))


def _dwelt_elsewhere(true: Visits, reported: Visits, j: int, long_enough_ms: float) -> bool:
    # A false patrol overlapping a long true visit of the same officer in a
    # different hot spot: typically an adjacent cell picking up jitter.
    other = (true.officer == reported.officer[j]) & (true.hotspot != reported.hotspot[j])
    other &= (true.end_ms - true.start_ms) >= long_enough_ms
    return bool(np.any(other & (true.start_ms < reported.end_ms[j]) & (true.end_ms > reported.start_ms[j])))


def evaluate(sim: SimulatedFixes, hotspots: HotspotSet, rules: RuleSettings, interval_s: float,
             min_true_s: float = 960.0, *, truth: tuple[Visits, OfficerRegistry] | None = None) -> AccuracyScore:
    """Score one simulated day under ``rules`` (truth computed unless given).

    Parameters
    ----------
    sim : SimulatedFixes
        The simulated day.
    hotspots : HotspotSet
        Its hot spots.
    rules : RuleSettings
        Rule settings under test; ``rules.min_patrol_s`` is the patrol threshold.
    interval_s : float
        The radios' (fixed) reporting interval.
    min_true_s : float, default 960
        Length of the true visits that must be recovered.
    truth : (Visits, OfficerRegistry), optional
        Precomputed :func:`true_visits` and its registry, to score many rule
        settings against one day without recomputing the truth.

    Returns
    -------
    AccuracyScore
    """
    if truth is None:
        registry = OfficerRegistry()
        truth = (true_visits(sim, hotspots, registry), registry)
    true, registry = truth
    reported = reported_visits(sim, hotspots, rules, registry)
    return score(true, reported, interval_s, min_true_s, min_patrol_s=rules.min_patrol_s)


__all__ = ["AccuracyScore", "evaluate", "reported_visits", "score", "true_visits"]
