"""Grid mode of the accuracy bench (issue 17): the adaptive defaults against the best fixed setting per condition.

Cells: radios reporting every 10, 30, 60 or 120 s with 5, 15, 30 or 50 m of
error (5% drops, the simulator's default duplicates and late deliveries), and
a mixed fleet: half the officers on radios at 60 s / 30 m, half on apps at
10 s / 5 m, the two halves simulated separately on the same day (as in
benchmarks/results/accuracy-grid-study). Day k of a uniform cell is the day k
of benchmarks/bench_accuracy.py (schedule seed 100 + k, simulation seed
1000 + k). On each (cell, day) the adaptive defaults (``RuleSettings()``, read
when the run starts) and every fixed setting of margin x grace x gap
(midpoint bounds) are scored with the bench's ``score_rules``; counts are
pooled over the days. The best fixed setting of a cell has the highest recall
among those with at most 2% false patrols (ties to the smaller margin, then
grace, then gap).

    .venv/bin/python benchmarks/bench_accuracy.py --grid [--days 5] [--officers 30] [--procs 2] [--out DIR]

Writes DIR/accuracy-grid.json and DIR/accuracy-grid.png (DIR defaults to
benchmarks/results) and prints a table per cell.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import geo
from benchmarks.bench_accuracy import FIRST_DAY, RESULTS, score_rules
from stream.accuracy import AccuracyScore, true_visits
from stream.engine import RuleSettings
from stream.fixes import OfficerRegistry
from stream.schedule import draw_schedule
from stream.simulate import SimulatedFixes, SimulationSettings, simulate_day

INTERVALS_S = (10.0, 30.0, 60.0, 120.0)
ERRORS_M = (5.0, 15.0, 30.0, 50.0)
DROP_SHARE = 0.05
MARGINS_M = (0.0, 5.0, 10.0, 15.0, 25.0, 35.0)
GRACES_S = (0.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 360.0, 480.0)
GAPS_S = (90.0, 120.0, 180.0, 240.0, 420.0, 600.0)
FIXED_SETTINGS = list(itertools.product(MARGINS_M, GRACES_S, GAPS_S))  # (margin m, grace s, gap s)
FALSE_SHARE_CAP = 0.02
WITHIN = 0.01  # "within one point" of the best fixed recall
MIXED_SEED_OFFSET = 2000  # app half: simulation seed 3000 + k (the radio half keeps 1000 + k)
TARGETS = {"60s_30m": 0.97, "30s_15m": 0.985, "10s_5m": 0.99, "120s_50m": 0.90}  # min recall, false <= cap
COUNT_FIELDS = tuple(f.name for f in dataclasses.fields(AccuracyScore) if f.name.startswith("n_"))
_TRUE, _RECOVERED = COUNT_FIELDS.index("n_true_long"), COUNT_FIELDS.index("n_recovered")
_REPORTED, _FALSE = COUNT_FIELDS.index("n_reported_patrols"), COUNT_FIELDS.index("n_false")
_EPS = 1e-12  # float slack for "<=" on shares and recalls


def cell_name(interval_s: float, error_m: float) -> str:
    return f"{interval_s:.0f}s_{error_m:.0f}m"


def cells() -> dict[str, list[dict]]:
    """Cell name -> its parts (officer sets simulated separately on the same day), as in the grid study."""
    out = {}
    for iv, err in itertools.product(INTERVALS_S, ERRORS_M):
        out[cell_name(iv, err)] = [{"name": "all", "interval_s": iv, "error_m": err, "officers": None,
                                    "seed_offset": 0, "prefix": None}]
    out["mixed"] = [
        {"name": "radio", "interval_s": 60.0, "error_m": 30.0, "officers": "half", "seed_offset": 0,
         "prefix": "radio"},
        {"name": "app", "interval_s": 10.0, "error_m": 5.0, "officers": "half", "seed_offset": MIXED_SEED_OFFSET,
         "prefix": "app"},
    ]
    return out


CELLS = cells()


# ----------------------------------------------------------------------------- selection (pure, over counts)

def recall_and_false(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and false-patrol share of count rows (``(..., len(COUNT_FIELDS))``)."""
    counts = np.asarray(counts)
    n_true, n_reported = counts[..., _TRUE], counts[..., _REPORTED]
    recall = np.where(n_true > 0, counts[..., _RECOVERED] / np.maximum(n_true, 1), np.nan)
    false = np.where(n_reported > 0, counts[..., _FALSE] / np.maximum(n_reported, 1), 0.0)
    return recall, false


def best_under(fixed_counts: np.ndarray, settings: Sequence[tuple], false_cap: float) -> int | None:
    """Row of the highest recall among settings with false share <= ``false_cap`` (None if none).

    Recall ties (equal recovered counts: every setting has the same true visits) go to the smaller margin,
    then grace, then gap (the setting tuple's order).
    """
    _, false = recall_and_false(fixed_counts)
    ok = np.flatnonzero(false <= false_cap + _EPS)
    if ok.size == 0:
        return None
    return int(min(ok, key=lambda i: (-int(fixed_counts[i, _RECOVERED]), tuple(settings[i]))))


def compare_cell(fixed_counts: np.ndarray, settings: Sequence[tuple], adaptive_counts: np.ndarray,
                 min_recall: float | None = None, false_cap: float = FALSE_SHARE_CAP) -> dict:
    """The adaptive defaults against the fixed settings of one cell, from pooled counts.

    ``fixed_counts`` has one row per setting of ``settings`` ((margin, grace, gap) tuples);
    ``adaptive_counts`` is one row. Each setting entry of the record has its ``row`` in ``settings``. When
    no fixed setting keeps false patrols under the cap, the best fixed is the best among those with the
    lowest false share (``cap_met`` false).
    """
    fixed_counts = np.asarray(fixed_counts, np.int64)
    recall, false = recall_and_false(fixed_counts)
    a_recall, a_false = (float(v) for v in recall_and_false(adaptive_counts))

    def entry(i: int) -> dict:
        m, g, gap = settings[i]
        return {"row": i, "setting": {"exit_margin_m": float(m), "exit_grace_s": float(g), "max_gap_s": float(gap)},
                "recall": float(recall[i]), "false_share": float(false[i]), "counts": counts_dict(fixed_counts[i])}

    best = best_under(fixed_counts, settings, false_cap)
    cap_met = best is not None
    if not cap_met:
        best = best_under(fixed_counts, settings, float(false.min()))
    pareto_cap = max(a_false, false_cap)
    pareto = best_under(fixed_counts, settings, pareto_cap)  # never None: the capped best qualifies
    record = {
        "n_true_long": int(adaptive_counts[_TRUE]),
        "adaptive": {"recall": a_recall, "false_share": a_false, "counts": counts_dict(adaptive_counts)},
        "best_fixed": entry(best) | {"cap_met": cap_met},
        "best_fixed_uncapped": entry(best_under(fixed_counts, settings, np.inf)),
        "shortfall_pt": 100 * (float(recall[best]) - a_recall),
        "within_one_point": a_recall >= float(recall[best]) - WITHIN - _EPS,
        "pareto": entry(pareto) | {"false_cap": pareto_cap,
                                   "shortfall_pt": 100 * (float(recall[pareto]) - a_recall)},
    }
    if min_recall is not None:
        recall_met, false_met = a_recall >= min_recall - _EPS, a_false <= false_cap + _EPS
        record["target"] = {"min_recall": min_recall, "max_false_share": false_cap, "recall_met": recall_met,
                            "false_met": false_met, "met": recall_met and false_met}
    return record


def counts_dict(row: np.ndarray) -> dict[str, int]:
    return {f: int(v) for f, v in zip(COUNT_FIELDS, row)}


# ----------------------------------------------------------------------------- simulation and scoring

def simulate_part(hs, k: int, part: dict, officers: int) -> SimulatedFixes:
    """Day k of one officer set: bench_accuracy.simulated_days for one day, with the part's seed offset;
    the officers of a named part are renamed ("radio-0001") so that halves sharing a registry do not meet."""
    day = FIRST_DAY + dt.timedelta(days=k)
    sched = draw_schedule(hs.ids, first_day=day, days=1, share=0.5, seed=100 + k, groups=hs.groups)
    n = officers // 2 if part["officers"] == "half" else officers
    sim = simulate_day(hs, sched, day, SimulationSettings(
        officers=n, seed=1000 + k + part["seed_offset"], report_interval_s=part["interval_s"],
        error_m=part["error_m"], drop_share=DROP_SHARE))
    if part["prefix"]:
        def rename(ids):
            uniq, inv = np.unique(np.asarray(ids, dtype=str), return_inverse=True)
            new = np.array([u.replace("officer-", part["prefix"] + "-") for u in uniq], dtype=object)
            return new[inv]
        sim = dataclasses.replace(sim, officer_id=rename(sim.officer_id), true_officer_id=rename(sim.true_officer_id))
    return sim


def fixed_rules(adaptive: RuleSettings, margin_m: float, grace_s: float, gap_s: float) -> RuleSettings:
    # Everything else (patrol length, speed limit, reorder window) as in the defaults under test.
    return dataclasses.replace(adaptive, scaling="fixed", exit_margin_m=float(margin_m), exit_grace_s=float(grace_s),
                               max_gap_s=float(gap_s), visit_bounds="midpoint")


_HOTSPOTS = None


def _init_worker() -> None:
    global _HOTSPOTS
    _HOTSPOTS = geo.load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)


def cell_day_task(task: tuple[str, int, int, RuleSettings]) -> tuple[str, int, np.ndarray, float]:
    """Simulate one (cell, day) and score the adaptive defaults (row 0) and every fixed setting on it.

    Returns counts of shape (1 + len(FIXED_SETTINGS), parts, len(COUNT_FIELDS)) and the seconds taken;
    nothing is kept once the task is done.
    """
    cell, k, officers, adaptive = task
    t0 = time.perf_counter()
    if _HOTSPOTS is None:
        _init_worker()
    registry = OfficerRegistry()  # one per day, shared by the halves of the mixed fleet
    parts = []
    for part in CELLS[cell]:
        sim = simulate_part(_HOTSPOTS, k, part, officers)
        parts.append((part, sim, true_visits(sim, _HOTSPOTS, registry)))
    rules = [adaptive] + [fixed_rules(adaptive, *s) for s in FIXED_SETTINGS]
    counts = np.zeros((len(rules), len(parts), len(COUNT_FIELDS)), np.int64)
    for r, rule in enumerate(rules):
        for p, (part, sim, true) in enumerate(parts):
            pooled, _ = score_rules(_HOTSPOTS, [(sim, (true, registry))], rule, part["interval_s"])
            counts[r, p] = [getattr(pooled, f) for f in COUNT_FIELDS]
    return cell, k, counts, time.perf_counter() - t0


def run_tasks(cell_names: list[str], days: int, officers: int, procs: int,
              adaptive: RuleSettings) -> dict[str, np.ndarray]:
    """Cell -> counts summed over days, shape (1 + settings, parts, fields), with progress on stderr."""
    # The slow tasks first (the cost grows with the number of fixes, officers / interval), so the workers
    # finish together.
    cost = {c: sum((0.5 if p["officers"] == "half" else 1.0) / p["interval_s"] for p in parts)
            for c, parts in CELLS.items()}
    tasks = sorted(((c, k, officers, adaptive) for c in cell_names for k in range(days)), key=lambda t: -cost[t[0]])
    # One single-threaded worker per process; the spawned workers read these when they import numba.
    os.environ.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    pooled: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(procs, initializer=_init_worker) as pool:
        for n, (c, k, counts, sec) in enumerate(pool.imap_unordered(cell_day_task, tasks), 1):
            pooled[c] = pooled.get(c, 0) + counts
            print(f"grid {n}/{len(tasks)} tasks ({c} day {k}: {sec:.0f} s), elapsed {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    return pooled


# ----------------------------------------------------------------------------- run

def run(days: int = 5, officers: int = 30, procs: int = 2, out: Path = RESULTS,
        cell_names: list[str] | None = None) -> dict:
    """The grid: simulate, score, select, write the JSON and the figure, print the table."""
    from benchmarks.accuracy_grid_report import draw, print_table

    started = time.perf_counter()
    adaptive = RuleSettings()  # read now, never copied: the defaults are still being tuned
    cell_names = cell_names or list(CELLS)
    pooled = run_tasks(cell_names, days, officers, procs, adaptive)
    records = {}
    for c in cell_names:
        counts = pooled[c]
        record = compare_cell(counts[1:].sum(axis=1), FIXED_SETTINGS, counts[0].sum(axis=0), TARGETS.get(c))
        recall, false = recall_and_false(counts[1:].sum(axis=1))
        record["fixed_recall"] = np.round(recall, 5).tolist()  # in the order of "fixed_settings"
        record["fixed_false_share"] = np.round(false, 5).tolist()
        if len(CELLS[c]) > 1:  # each half, adaptive and the cell's best fixed setting
            best = record["best_fixed"]["row"]
            record["parts"] = {}
            for p, part in enumerate(CELLS[c]):
                (ar, af), (br, bf) = recall_and_false(counts[0, p]), recall_and_false(counts[1 + best, p])
                record["parts"][part["name"]] = {
                    "adaptive": {"recall": float(ar), "false_share": float(af), "counts": counts_dict(counts[0, p])},
                    "best_fixed": {"recall": float(br), "false_share": float(bf),
                                   "counts": counts_dict(counts[1 + best, p])}}
        records[c] = record
    seconds = time.perf_counter() - started
    result = {
        "what": "issue 17 grid: adaptive default dwell rules vs the best fixed setting per radio condition",
        "command": " ".join([sys.executable] + sys.argv),
        "settings": {
            "days": days, "officers_per_day": officers, "procs": procs, "first_day": FIRST_DAY.isoformat(),
            "seeds": "schedule 100 + day, simulation 1000 + day (+ the part's seed_offset)",
            "drop_share": DROP_SHARE, "duplicate_share": SimulationSettings().duplicate_share,
            "late_share": SimulationSettings().late_share, "min_true_s": 960.0,
            "tolerance": "2 reporting intervals (each half of the mixed fleet its own)",
            "fixed_axes": {"exit_margin_m": MARGINS_M, "exit_grace_s": GRACES_S, "max_gap_s": GAPS_S,
                           "visit_bounds": "midpoint", "scaling": "fixed"},
            "fixed_settings": FIXED_SETTINGS, "false_share_cap": FALSE_SHARE_CAP, "within_one_point_recall": WITHIN,
            "targets": TARGETS,
            "best_fixed": "highest recall with false share <= the cap; ties to smaller margin, grace, gap",
            "pareto": "best fixed recall with false share <= max(adaptive's, the cap), minus adaptive recall",
        },
        "cells": {c: CELLS[c] for c in cell_names},
        "defaults": dataclasses.asdict(adaptive),
        "records": records,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "seconds": round(seconds, 1)},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy-grid.json").write_text(json.dumps(result, indent=1))
    draw(result, out / "accuracy-grid.png")
    print_table(result)
    print(f"\n{seconds:.0f} s; wrote {out / 'accuracy-grid.json'} and accuracy-grid.png")
    return result
