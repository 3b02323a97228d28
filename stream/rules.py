"""The dwell rules' settings, and the limits they set for each officer and fix."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from kernels import visits as visit_kernels
from kernels._checks import seconds_to_ms


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
    # Adaptive stay points (kernels/stays.py): at least stay_min_fixes fixes in a row within
    # stay_radius_accuracies x their stated accuracy of their centroid, with at most stay_max_misses stray
    # fixes in a row among them, are judged as one fix at the centroid. With 30-50 m of error it is the
    # difference between a patrol seen and a patrol lost (benchmarks/results/accuracy-grid-study/
    # presence-prototypes.md); 0 fixes turns it off.
    stay_min_fixes: int = 6
    stay_radius_accuracies: float = 2.5
    stay_max_misses: int = 1
    # A stay is looked for only where a walker would leave its radius between two reports (interval x this
    # speed >= stay_radius_accuracies x accuracy): a 10 s radio with 15 m of error cannot tell a stroll
    # from a stay, and gathering one would blur the ends of the visit it starts (the grid: -15 points).
    walking_speed_mps: float = 1.4
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
        if self.stay_min_fixes == 1 or self.stay_min_fixes < 0 or self.stay_max_misses < 0:
            raise ValueError("stay_min_fixes must be 0 (off) or at least 2, and stay_max_misses >= 0")
        if self.stay_radius_accuracies <= 0 or self.walking_speed_mps <= 0:
            raise ValueError("stay_radius_accuracies and walking_speed_mps must be > 0")
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
        self.stays = self.adaptive and rules.stay_min_fixes > 0
        self.stay_radius_accuracies = rules.stay_radius_accuracies
        self.walking_speed_mps = rules.walking_speed_mps

    def stay_radius(self, accuracy_m: np.ndarray, interval_ms: np.ndarray) -> np.ndarray:
        """How near a stay's centroid each fix must lie to join it, metres: 0 (never) where a walker would
        not leave that radius between two of the officer's reports, or his interval is not yet known."""
        radius = self.stay_radius_accuracies * accuracy_m
        return np.where(interval_ms / 1000.0 * self.walking_speed_mps >= radius, radius, 0.0)

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
