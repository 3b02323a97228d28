"""Issue 17 grid study: the best FIXED dwell-rule setting per radio condition, and scaling rules.

For each cell of report interval {10, 30, 60, 120} s x error {5, 15, 30, 50} m
(5% drops, the simulator's default duplicates and late deliveries) plus a
mixed fleet (half radios at 60 s / 30 m, half apps at 10 s / 5 m), seeded
policing days over the 57 Nottingham hot spots are simulated exactly as
benchmarks/bench_accuracy.py does (schedule seed 100 + k, simulation seed
1000 + k, 30 officers) and every fixed setting of the grid

    exit_margin_m {0,5,10,15,25,35,50,75} x exit_grace_s {0,30,60,90,120,180,240,360}
    x max_gap_s {90,120,180,240,300,420,600}, visit_bounds midpoint

is scored with stream.accuracy.score (the bench's score_rules). Then simple
scaling rules are fitted and candidate rules evaluated, per cell, as a fixed
setting computed from the cell's true interval and error (per half in the
mixed fleet), on the grid days and on held-out days.

The code under test is a snapshot of the repository at HEAD in
/tmp/grid-study/src (so that concurrent edits in /work/main do not change
the study half-way); its commit is in src_commit.txt.

    OMP_NUM_THREADS=1 /work/main/.venv/bin/python /tmp/grid-study/study.py [--days 12] [--holdout 6]

Writes /tmp/grid-study/results.json and summary.md; per-(cell, day) parts in
/tmp/grid-study/parts/ and simulated days in /tmp/grid-study/cache/ (reused
on a re-run with the same arguments).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import math
import multiprocessing as mp
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
sys.path.insert(0, str(SRC))

import geo  # noqa: E402
from benchmarks.bench_accuracy import FIRST_DAY, score_rules, simulated_days  # noqa: E402
from stream.accuracy import _COUNT_FIELDS, reported_visits, score, true_visits  # noqa: E402
from stream.engine import RuleSettings, Visits  # noqa: E402
from stream.fixes import OfficerRegistry  # noqa: E402
from stream.schedule import draw_schedule  # noqa: E402
from stream.simulate import SimulatedFixes, SimulationSettings, simulate_day  # noqa: E402

INTERVALS_S = (10.0, 30.0, 60.0, 120.0)
ERRORS_M = (5.0, 15.0, 30.0, 50.0)
DROP_SHARE = 0.05
MARGINS_M = (0.0, 5.0, 10.0, 15.0, 25.0, 35.0, 50.0, 75.0)
GRACES_S = (0.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 360.0)
GAPS_S = (90.0, 120.0, 180.0, 240.0, 300.0, 420.0, 600.0)
SETTINGS = list(itertools.product(MARGINS_M, GRACES_S, GAPS_S))  # (margin, grace, gap)
FALSE_MAX = 0.02
NEAR_PT = 0.005  # "within 0.5 point of the best"
CURRENT = RuleSettings()
CURRENT_KEY = (CURRENT.exit_margin_m, CURRENT.exit_grace_s, CURRENT.max_gap_s)
MIXED_SEED_OFFSET = 2000  # app half: simulation seed 3000 + k (radio half keeps 1000 + k)

TARGETS = {  # cell -> minimum recall (false share <= 2% in each too)
    "60s_30m": 0.97, "30s_15m": 0.985, "10s_5m": 0.99, "120s_50m": 0.90,
}


def cell_name(iv: float, err: float) -> str:
    return f"{iv:.0f}s_{err:.0f}m"


def cells() -> dict[str, list[dict]]:
    """cell name -> its parts (officer sets simulated separately on the same day)."""
    out = {}
    for iv, err in itertools.product(INTERVALS_S, ERRORS_M):
        out[cell_name(iv, err)] = [dict(name="all", interval_s=iv, error_m=err, officers=None, seed_offset=0,
                                        prefix=None)]
    out["mixed"] = [
        dict(name="radio", interval_s=60.0, error_m=30.0, officers="half", seed_offset=0, prefix="radio"),
        dict(name="app", interval_s=10.0, error_m=5.0, officers="half", seed_offset=MIXED_SEED_OFFSET, prefix="app"),
    ]
    return out


CELLS = cells()


# ----------------------------------------------------------------------------- simulation

def simulate_part(hs, k: int, part: dict, officers: int) -> SimulatedFixes:
    """Day k of one officer set: the body of bench_accuracy.simulated_days for one day (seeds 100 + k and
    1000 + k (+ the part's offset)), so that days 0..D-1 of a uniform cell are the bench's days."""
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


def load_day(hs, cell: str, k: int, officers: int) -> dict:
    """{'registry', 'parts': [(part, sim without the true path, true visits)]}, cached on disk."""
    path = HERE / "cache" / f"{cell}_o{officers}_d{k:02d}.pkl"
    if path.exists():
        with open(path, "rb") as fh:
            return pickle.load(fh)
    registry = OfficerRegistry()
    parts = []
    for part in CELLS[cell]:
        sim = simulate_part(hs, k, part, officers)
        true = true_visits(sim, hs, registry)
        e = np.empty(0)
        slim = dataclasses.replace(sim, true_officer_id=e.astype(object), true_ts_ms=e.astype(np.int64),
                                   true_lat=e, true_lon=e)
        parts.append((part, slim, true))
    day = {"registry": registry, "parts": parts}
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(day, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return day


def rules_of(margin: float, grace: float, gap: float) -> RuleSettings:
    return RuleSettings(exit_margin_m=float(margin), exit_grace_s=float(grace), max_gap_s=float(gap),
                        visit_bounds="midpoint")


def counts_of(sc) -> np.ndarray:
    return np.array([getattr(sc, f) for f in _COUNT_FIELDS], np.int64)


# ----------------------------------------------------------------------------- workers

_HS = None


def _init() -> None:
    global _HS
    _HS = geo.load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)


def grid_task(args) -> tuple[str, int, float]:
    """Score every grid setting on one (cell, day); counts (settings, parts, fields) saved to parts/."""
    cell, k, officers = args
    out = HERE / "parts" / f"grid_{cell}_o{officers}_d{k:02d}.npy"
    if out.exists():
        return cell, k, 0.0
    t0 = time.perf_counter()
    day = load_day(_HS, cell, k, officers)
    counts = np.zeros((len(SETTINGS), len(day["parts"]), len(_COUNT_FIELDS)), np.int64)
    for s, (m, g, gap) in enumerate(SETTINGS):
        rules = rules_of(m, g, gap)
        for p, (part, sim, true) in enumerate(day["parts"]):
            pooled, _ = score_rules(_HS, [(sim, (true, day["registry"]))], rules, part["interval_s"])
            counts[s, p] = counts_of(pooled)
    out.parent.mkdir(exist_ok=True)
    np.save(out.with_suffix(".tmp.npy"), counts)
    out.with_suffix(".tmp.npy").replace(out)
    return cell, k, time.perf_counter() - t0


def eval_task(args) -> tuple[str, int, dict]:
    """Score named settings (each a function of the part's interval and error) on one (cell, day).

    Per setting and part: counts under the study's scoring, under two relaxed scorings (true visits of
    900 s + 2 intervals; tolerance max(2 intervals, 60 s)), and the signed start/end errors."""
    cell, k, officers, named = args
    day = load_day(_HS, cell, k, officers)
    res = {}
    for name, per_part in named.items():
        rows = []
        for p, (part, sim, true) in enumerate(day["parts"]):
            m, g, gap = per_part[p]
            rules = rules_of(m, g, gap)
            iv = part["interval_s"]
            rep = reported_visits(sim, _HS, rules, day["registry"])
            base = score(true, rep, iv, min_patrol_s=rules.min_patrol_s)
            long_only = score(true, rep, iv, 900.0 + 2 * iv, min_patrol_s=rules.min_patrol_s)
            wide = score(true, rep, iv, min_patrol_s=rules.min_patrol_s, tolerance_intervals=max(2.0, 60.0 / iv))
            rows.append({"counts": counts_of(base), "counts_long": counts_of(long_only),
                         "counts_wide": counts_of(wide), "start_err": base.start_err_s, "end_err": base.end_err_s})
        res[name] = rows
    return cell, k, res


# ----------------------------------------------------------------------------- analysis

def summarise(c: np.ndarray) -> dict:
    d = {f: int(v) for f, v in zip(_COUNT_FIELDS, c)}
    d["recall"] = c[1] / c[0] if c[0] else float("nan")
    d["false_share"] = c[6] / c[5] if c[5] else 0.0
    return d


def analyse_grid(pooled: np.ndarray, per_part: np.ndarray, parts: list[dict]) -> dict:
    """pooled: (settings, fields) summed over days and parts."""
    n_true, rec = pooled[:, 0], pooled[:, 1]
    recall = rec / n_true
    false = np.where(pooled[:, 5] > 0, pooled[:, 6] / np.maximum(pooled[:, 5], 1), 0.0)
    feasible = false <= FALSE_MAX
    idx = {s: i for i, s in enumerate(SETTINGS)}
    cur = idx[CURRENT_KEY]
    if not feasible.any():
        feasible = false <= false.min() + 1e-12
    # Highest recall among the feasible; ties (equal recovered counts) -> smaller margin, grace, gap.
    order = sorted(np.flatnonzero(feasible), key=lambda i: (-rec[i], SETTINGS[i]))
    b = order[0]
    near = [i for i in np.flatnonzero(feasible) if recall[i] >= recall[b] - NEAR_PT - 1e-12]
    near_settings = [SETTINGS[i] for i in near]

    def profile(axis: int, values) -> dict:
        prof = {}
        for v in values:
            ii = [i for i in np.flatnonzero(feasible) if SETTINGS[i][axis] == v]
            prof[v] = float(recall[ii].max()) if ii else float("nan")
        band = [v for v in values if prof[v] >= recall[b] - NEAR_PT - 1e-12]
        return {"profile": {str(v): round(x, 5) for v, x in prof.items()}, "band": band,
                "band_lo": min(band), "band_hi": max(band)}

    # At the best (grace, gap) / (margin, gap) / (margin, grace): 1-D slices, for plots and fits.
    def slice_(axis: int, values) -> dict:
        out = {}
        for v in values:
            key = list(SETTINGS[b])
            key[axis] = v
            i = idx[tuple(key)]
            out[str(v)] = [round(float(recall[i]), 5), round(float(false[i]), 5)]
        return out

    # Best recall under other false-share caps (the 2% cap binds at high error).
    pareto = {}
    for cap in (0.01, 0.02, 0.03, 0.05, 1.0):
        ok = np.flatnonzero(false <= cap + 1e-12)
        if ok.size:
            i = sorted(ok, key=lambda i: (-rec[i], SETTINGS[i]))[0]
            pareto[str(cap)] = {"setting": SETTINGS[i], "recall": round(float(recall[i]), 5),
                                "false_share": round(float(false[i]), 5)}
    half = {}
    if per_part.shape[1] > 1:
        for p, part in enumerate(parts):
            half[part["name"]] = {"current": summarise(per_part[cur, p]), "best": summarise(per_part[b, p])}
    return {
        "n_true_long": int(n_true[0]),
        "current": {"setting": CURRENT_KEY, **summarise(pooled[cur])},
        "best": {"setting": SETTINGS[b], **summarise(pooled[b])},
        "best_unconstrained": {"setting": SETTINGS[int(np.lexsort((np.arange(len(SETTINGS)), -rec))[0])],
                               **summarise(pooled[int(np.lexsort((np.arange(len(SETTINGS)), -rec))[0])])},
        "n_feasible": int(feasible.sum()),
        "near": {"n": len(near), "margin": sorted({s[0] for s in near_settings}),
                 "grace": sorted({s[1] for s in near_settings}), "gap": sorted({s[2] for s in near_settings}),
                 "settings": near_settings if len(near) <= 60 else "too many to list"},
        "profile_margin": profile(0, MARGINS_M), "profile_grace": profile(1, GRACES_S),
        "profile_gap": profile(2, GAPS_S),
        "slice_margin": slice_(0, MARGINS_M), "slice_grace": slice_(1, GRACES_S), "slice_gap": slice_(2, GAPS_S),
        "halves": half, "best_by_false_cap": pareto,
        "recall_all": np.round(recall, 5).tolist(), "false_all": np.round(false, 5).tolist(),
    }


def lstsq(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef, float(np.sqrt(np.mean((X @ coef - y) ** 2)))


def fit_rules(grid: dict) -> dict:
    """Simple rules from the uniform cells' best settings and near-optimal bands."""
    uni = [(iv, err, grid[cell_name(iv, err)]) for iv in INTERVALS_S for err in ERRORS_M]
    iv = np.array([u[0] for u in uni])
    err = np.array([u[1] for u in uni])
    best = np.array([u[2]["best"]["setting"] for u in uni], float)  # margin, grace, gap
    ones = np.ones_like(iv)
    fits = {}
    c, rmse = lstsq(np.c_[ones, iv], best[:, 2])
    fits["gap ~ a + b*interval"] = {"a": c[0], "b": c[1], "rmse": rmse}
    c, rmse = lstsq(np.c_[ones, iv, err], best[:, 1])
    fits["grace ~ a + b*interval + c*error"] = {"a": c[0], "b": c[1], "c": c[2], "rmse": rmse}
    c, rmse = lstsq(np.c_[ones, iv], best[:, 1])
    fits["grace ~ a + b*interval"] = {"a": c[0], "b": c[1], "rmse": rmse}
    c, rmse = lstsq(np.c_[err], best[:, 0])
    fits["margin ~ c*error"] = {"c": c[0], "rmse": rmse}
    c, rmse = lstsq(np.c_[ones, err], best[:, 0])
    fits["margin ~ a + c*error"] = {"a": c[0], "c": c[1], "rmse": rmse}
    c, rmse = lstsq(np.c_[ones, err, iv], best[:, 0])
    fits["margin ~ a + c*error + d*interval"] = {"a": c[0], "c": c[1], "d": c[2], "rmse": rmse}
    fits = {k: {kk: round(float(vv), 4) for kk, vv in v.items()} for k, v in fits.items()}

    # Band-based: for max(floor, k*x), in how many uniform cells does the rule land inside the
    # parameter's near-optimal band [lo, hi] (profile within 0.5 point of the best)?
    def band_hits(axis_name: str, x: np.ndarray, floors, ks):
        lo = np.array([u[2][f"profile_{axis_name}"]["band_lo"] for u in uni])
        hi = np.array([u[2][f"profile_{axis_name}"]["band_hi"] for u in uni])
        rows = []
        for f0, k in itertools.product(floors, ks):
            v = np.maximum(f0, k * x)
            hits = int(((v >= lo) & (v <= hi)).sum())
            rows.append({"floor": f0, "k": k, "cells_in_band": hits,
                         "misses": [cell_name(a, b) for a, b, ok in zip(iv, err, (v >= lo) & (v <= hi)) if not ok]})
        rows.sort(key=lambda r: (-r["cells_in_band"], r["floor"], r["k"]))
        return rows[:8]

    bands = {
        "gap = max(floor, k*interval)": band_hits("gap", iv, (90, 120, 180, 240), (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)),
        "grace = max(floor, k*interval)": band_hits("grace", iv, (0, 30, 60, 90, 120), (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)),
        "margin = max(floor, k*error)": band_hits("margin", err, (0, 5, 10, 15), (0.25, 0.5, 0.75, 1.0, 1.5)),
    }
    table = [{"cell": cell_name(a, b), "interval_s": a, "error_m": b, "best": list(s),
              "band_margin": [u["profile_margin"]["band_lo"], u["profile_margin"]["band_hi"]],
              "band_grace": [u["profile_grace"]["band_lo"], u["profile_grace"]["band_hi"]],
              "band_gap": [u["profile_gap"]["band_lo"], u["profile_gap"]["band_hi"]]}
             for (a, b, u), s in zip(uni, best.tolist())]
    return {"least_squares_on_best": fits, "band_rules": bands, "table": table}


# Candidate rules: (interval_s, error_m) -> (margin, grace, gap). "fitted" is built from fit_rules.
def candidate_rules(fits: dict) -> dict:
    def brief_example(iv, err):
        return max(10.0, 1.0 * err), max(120.0, 2.5 * iv), max(180.0, 3.5 * iv)

    ls = fits["least_squares_on_best"]
    g, gr, mg = ls["gap ~ a + b*interval"], ls["grace ~ a + b*interval"], ls["margin ~ a + c*error"]

    def fitted_ls(iv, err):
        return (max(0.0, mg["a"] + mg["c"] * err), max(0.0, gr["a"] + gr["b"] * iv), max(90.0, g["a"] + g["b"] * iv))

    out = {"current defaults": lambda iv, err: CURRENT_KEY, "A: brief example": brief_example,
           "B: least squares": fitted_ls}
    out.update(HAND_RULES)
    return out


# Hand-designed after reading the grid results (rule_search.py searches rule families on the grid; see
# summary.md, "Candidate rules"). Grace as a multiple of the interval: a grace in (n, n+1] intervals
# forgives n consecutive outside fixes; 2.5 intervals sits half an interval from either edge.
HAND_RULES = {
    "C: margin max(10,0.5e) grace max(60,2.5i) gap max(120,4i)":
        lambda iv, err: (max(10.0, 0.5 * err), max(60.0, 2.5 * iv), max(120.0, 4.0 * iv)),
    "D: margin 0 grace min(390,5.5i) gap max(120,4i)":
        lambda iv, err: (0.0, min(390.0, 5.5 * iv), max(120.0, 4.0 * iv)),
    "E: margin 10 grace i*max(0.5,6.5-0.15e) gap max(120,4i)":
        lambda iv, err: (10.0, iv * max(0.5, 6.5 - 0.15 * err), max(120.0, 4.0 * iv)),
}


# ----------------------------------------------------------------------------- report

def pct(x: float) -> str:
    return "nan" if x != x else f"{100 * x:.2f}"


def setting_str(s) -> str:
    return f"{s[0]:g}/{s[1]:g}/{s[2]:g}"


def write_summary(res: dict, path: Path) -> None:
    L = []
    a = L.append
    a("# Issue 17 grid study: best fixed dwell settings per radio condition\n")
    a(f"Code: snapshot of /work/main at commit `{res['code_commit']}` (in /tmp/grid-study/src). "
      f"Days: {res['days']} grid days ({res['officers']} officers each; mixed: {res['officers'] // 2} radios at "
      f"60 s / 30 m + {res['officers'] // 2} apps at 10 s / 5 m), plus {res['holdout']} held-out days for the "
      f"check. 5% drops, 1% duplicates, 0.5% late. Settings: margin x grace x gap = "
      f"{len(MARGINS_M)} x {len(GRACES_S)} x {len(GAPS_S)} = {len(SETTINGS)}, midpoint bounds. "
      f"Wall time: grid {res['seconds']['grid']:.0f} s, evaluation {res['seconds']['eval']:.0f} s, "
      f"total {res['seconds']['total']:.0f} s.\n")
    a("Recall = share of true visits >= 16 min reported as patrols with start and end within 2 reporting "
      "intervals; false = share of reported patrols with no matching true visit. Settings are written "
      "margin m / grace s / gap s. Best = highest recall with false <= 2%, ties to smaller margin, grace, gap.\n")
    a("## 1. Per cell: current defaults vs best fixed setting\n")
    a("| cell | long visits | current recall | current false | best setting | best recall | best false | "
      "gain (pt) | # within 0.5 pt | margin band | grace band | gap band |")
    a("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell, g in res["grid"].items():
        a(f"| {cell} | {g['n_true_long']} | {pct(g['current']['recall'])} | {pct(g['current']['false_share'])} | "
          f"{setting_str(g['best']['setting'])} | {pct(g['best']['recall'])} | {pct(g['best']['false_share'])} | "
          f"{100 * (g['best']['recall'] - g['current']['recall']):+.2f} | {g['near']['n']} | "
          f"{g['profile_margin']['band_lo']:g}-{g['profile_margin']['band_hi']:g} | "
          f"{g['profile_grace']['band_lo']:g}-{g['profile_grace']['band_hi']:g} | "
          f"{g['profile_gap']['band_lo']:g}-{g['profile_gap']['band_hi']:g} |")
    a("\nBands: values of one parameter for which SOME feasible setting (other two free) is within 0.5 pt of the "
      "best (the profile); '# within 0.5 pt' counts feasible settings.\n")
    mixed = res["grid"].get("mixed", {})
    if mixed.get("halves"):
        a("Mixed fleet halves (each scored with its own interval): " + "; ".join(
            f"{h}: current {pct(v['current']['recall'])}% / false {pct(v['current']['false_share'])}%, "
            f"best-fixed {pct(v['best']['recall'])}% / false {pct(v['best']['false_share'])}%"
            for h, v in mixed["halves"].items()) + ".\n")
    a("### Best recall under other false-share caps (recall % / false % / setting)\n")
    caps = ("0.01", "0.02", "0.03", "0.05", "1.0")
    a("| cell | " + " | ".join(f"false <= {100 * float(c):g}%" if c != "1.0" else "no cap" for c in caps) + " |")
    a("|---|" + "---|" * len(caps))
    for cell, g in res["grid"].items():
        p = g["best_by_false_cap"]
        a(f"| {cell} | " + " | ".join(f"{pct(p[c]['recall'])} / {pct(p[c]['false_share'])} / {setting_str(p[c]['setting'])}"
                                      if c in p else "-" for c in caps) + " |")
    a("")
    a("### Profiles (best recall % over the other two parameters, false <= 2%)\n")
    for axis, values in (("gap", GAPS_S), ("grace", GRACES_S), ("margin", MARGINS_M)):
        a(f"**{axis}**\n")
        a("| cell | " + " | ".join(f"{v:g}" for v in values) + " |")
        a("|---|" + "---|" * len(values))
        for cell, g in res["grid"].items():
            prof = g[f"profile_{axis}"]["profile"]
            a(f"| {cell} | " + " | ".join(pct(prof[str(v)]) for v in values) + " |")
        a("")
    a("## 2. Fits\n")
    a("Least squares on the 16 uniform cells' best settings:\n")
    for k, v in res["fits"]["least_squares_on_best"].items():
        a(f"- {k}: " + ", ".join(f"{kk} = {vv:g}" for kk, vv in v.items()))
    a("\nBand rules (how many of the 16 uniform cells the rule lands inside the near-optimal band; best few):\n")
    for k, rows in res["fits"]["band_rules"].items():
        a(f"- {k}: " + "; ".join(f"floor {r['floor']:g}, k {r['k']:g}: {r['cells_in_band']}/16"
                                  + (f" (misses {', '.join(r['misses'])})" if r["misses"] else "")
                                  for r in rows[:4]))
    a("")
    a("## 3. Candidate scaling rules (fixed setting from the cell's true interval and error)\n")
    for cand, per in res["candidates"].items():
        a(f"### {cand}\n")
        a("| cell | setting | recall | false | best fixed | shortfall (pt) | best fixed at <= this false | "
          "Pareto shortfall (pt) | holdout recall / false | holdout best-fixed | target |")
        a("|---|---|---|---|---|---|---|---|---|---|---|")
        for cell, r in per["cells"].items():
            tgt = TARGETS.get(cell)
            ok = ""
            if tgt is not None:
                ok = f">= {100 * tgt:g}: " + ("met" if r["recall"] >= tgt and r["false_share"] <= FALSE_MAX
                                              else "NOT met")
            a(f"| {cell} | {r['setting_str']} | {pct(r['recall'])} | {pct(r['false_share'])} | "
              f"{pct(r['best_recall'])} | {100 * r['shortfall']:+.2f} | {pct(r['pareto_best_recall'])} | "
              f"{100 * r['pareto_shortfall']:+.2f} | {pct(r['holdout_recall'])} / {pct(r['holdout_false_share'])} | "
              f"{pct(r['holdout_best_recall'])} | {ok} |")
        a(f"\nCells with false <= 2% and within 1 pt of the best fixed: {per['ok_cells']}/{len(per['cells'])}; "
          f"cells with false > 2%: {per['n_false_over_cap']}; largest Pareto shortfall (vs the best fixed setting "
          f"with false share <= max(the candidate's, 2%)): {100 * per['max_pareto_shortfall']:.2f} pt "
          f"({per['max_pareto_shortfall_cell']}).\n")
        a(f"Largest shortfall vs best fixed: {100 * per['max_shortfall']:.2f} pt ({per['max_shortfall_cell']}); "
          f"targets met: {per['targets_met']}/{len(TARGETS)}; within 1 pt everywhere: {per['within_1pt_all']}; "
          f"max false share {pct(per['max_false'])}% ({per['max_false_cell']}).\n")
    a("### Candidates at a glance (recall % / false %, grid days)\n")
    names = list(res["candidates"])
    a("| cell | best fixed | " + " | ".join(n.split(":")[0] for n in names) + " |")
    a("|---|---|" + "---|" * len(names))
    for cell in res["grid"]:
        b = res["grid"][cell]["best"]
        a(f"| {cell} | {pct(b['recall'])} / {pct(b['false_share'])} | "
          + " | ".join(f"{pct(res['candidates'][n]['cells'][cell]['recall'])} / "
                       f"{pct(res['candidates'][n]['cells'][cell]['false_share'])}" for n in names) + " |")
    a("")
    a("| candidate | targets met (of 4) | cells false <= 2% and within 1 pt of best fixed (of 17) | cells false > 2% | "
      "largest shortfall vs best fixed (pt) | largest Pareto shortfall (pt) |")
    a("|---|---|---|---|---|---|")
    for n in names:
        c = res["candidates"][n]
        a(f"| {n} | {c['targets_met']} | {c['ok_cells']} | {c['n_false_over_cap']} | "
          f"{100 * c['max_shortfall']:.2f} ({c['max_shortfall_cell']}) | "
          f"{100 * c['max_pareto_shortfall']:.2f} ({c['max_pareto_shortfall_cell']}) |")
    a("")
    a("## 4. Scoring diagnostics (best fixed setting per cell, grid days)\n")
    a("| cell | recall | matched but off tolerance | missed: split/short | missed: nothing | borderline | false (neighbour) | "
      "recall, true >= 900 s + 2 intervals | recall, tolerance max(2 int, 60 s) | recall, tolerance 60 s | "
      "recall, tolerance 120 s | |start err| p95 s | "
      "|end err| p95 s |")
    a("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell, d in res["diagnostics"].items():
        a(f"| {cell} | {pct(d['recall'])} | {d['n_matched_off']} | {d['n_missed_split']} | {d['n_missed_absent']} | "
          f"{d['n_borderline']} | {d['n_false']} ({d['n_false_neighbour']}) | {pct(d['recall_long'])} | {pct(d['recall_wide'])} | {pct(d['recall_tol60s'])} | {pct(d['recall_tol120s'])} | {d['start_p95']:.0f} | "
          f"{d['end_p95']:.0f} |")
    a("")
    a(res.get("notes_md", ""))
    path.write_text("\n".join(L) + "\n")


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=12)
    ap.add_argument("--holdout", type=int, default=6)
    ap.add_argument("--officers", type=int, default=30)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--cells", default="", help="comma-separated subset (debugging)")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--summary-only", action="store_true", help="rewrite summary.md from results.json and notes.md")
    args = ap.parse_args(argv)
    if args.summary_only:
        res = json.loads((args.out / "results.json").read_text())
        notes = HERE / "notes.md"
        res["notes_md"] = notes.read_text() if notes.exists() else ""
        (args.out / "results.json").write_text(json.dumps(res, indent=1))
        write_summary(res, args.out / "summary.md")
        return 0
    t_start = time.perf_counter()
    cell_list = [c for c in CELLS if not args.cells or c in args.cells.split(",")]
    hs = geo.load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)

    # Check once that simulate_part reproduces the bench's simulated_days (day 0, 30 s / 15 m), and that
    # running the engine per officer set is the same as over the concatenated fixes (officers independent).
    ref = simulated_days(hs, {"interval_s": 30.0, "error_m": 15.0, "drop_share": DROP_SHARE}, 1, args.officers)[0][0]
    mine = simulate_part(hs, 0, CELLS["30s_15m"][0], args.officers)
    assert np.array_equal(ref.ts_ms, mine.ts_ms) and np.array_equal(ref.lat, mine.lat), "simulation differs from bench"
    if "mixed" in cell_list:
        day = load_day(hs, "mixed", 0, args.officers)
        sims = [p[1] for p in day["parts"]]
        cat = SimulatedFixes(*(np.concatenate([getattr(s, f.name) for s in sims])
                               for f in dataclasses.fields(SimulatedFixes)))
        together = reported_visits(cat, hs, CURRENT, day["registry"])
        apart = Visits.concat([reported_visits(s, hs, CURRENT, day["registry"]) for s in sims]).sorted()
        assert all(np.array_equal(x, y) for x, y in zip(together, apart)), "per-half engine run differs"
        print("checks passed: bench days reproduced; mixed fleet per-half == concatenated", file=sys.stderr)

    # Phase 1: the grid.
    cost = {10.0: 4, 30.0: 2, 60.0: 1.3, 120.0: 1}
    tasks = sorted(((c, k, args.officers) for c in cell_list for k in range(args.days)),
                   key=lambda t: -(3 if t[0] == "mixed" else cost[CELLS[t[0]][0]["interval_s"]]))
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.procs, initializer=_init) as pool:
        for n, (c, k, sec) in enumerate(pool.imap_unordered(grid_task, tasks), 1):
            print(f"grid {n}/{len(tasks)} {c} day {k}: {sec:.0f} s (elapsed {time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    t_grid = time.perf_counter() - t0

    grid = {}
    for c in cell_list:
        arr = sum(np.load(HERE / "parts" / f"grid_{c}_o{args.officers}_d{k:02d}.npy") for k in range(args.days))
        grid[c] = analyse_grid(arr.sum(axis=1), arr, CELLS[c])
    uniform_all = all(cell_name(i, e) in grid for i in INTERVALS_S for e in ERRORS_M)
    fits = fit_rules(grid) if uniform_all else {"least_squares_on_best": {}, "band_rules": {}, "table": []}

    # Phase 2: candidates, current defaults and each cell's best fixed setting, on grid and held-out days.
    cands = candidate_rules(fits) if uniform_all else {"current defaults": lambda iv, err: CURRENT_KEY, **HAND_RULES}
    t0 = time.perf_counter()
    tasks = []
    for c in cell_list:
        named = {name: [tuple(float(v) for v in f(p["interval_s"], p["error_m"])) for p in CELLS[c]]
                 for name, f in cands.items()}
        named["best fixed"] = [tuple(grid[c]["best"]["setting"])] * len(CELLS[c])
        for k in range(args.days + args.holdout):
            tasks.append((c, k, args.officers, named))
    ev: dict = {}
    with mp.get_context("spawn").Pool(args.procs, initializer=_init) as pool:
        for n, (c, k, r) in enumerate(pool.imap_unordered(eval_task, tasks), 1):
            ev[(c, k)] = r
            if n % 20 == 0 or n == len(tasks):
                print(f"eval {n}/{len(tasks)} (elapsed {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    t_eval = time.perf_counter() - t0

    def pooled(c: str, name: str, key: str, days) -> np.ndarray:
        return sum(row[key] for k in days for row in ev[(c, k)][name])

    grid_days, hold_days = range(args.days), range(args.days, args.days + args.holdout)
    candidates = {}
    for name in cands:
        per_cell = {}
        for c in cell_list:
            s = summarise(pooled(c, name, "counts", grid_days))
            b = summarise(pooled(c, "best fixed", "counts", grid_days))
            h = summarise(pooled(c, name, "counts", hold_days)) if args.holdout else {"recall": float("nan")}
            hb = summarise(pooled(c, "best fixed", "counts", hold_days)) if args.holdout else {"recall": float("nan")}
            settings = [tuple(float(v) for v in cands[name](p["interval_s"], p["error_m"])) for p in CELLS[c]]
            rec_all, fal_all = np.array(grid[c]["recall_all"]), np.array(grid[c]["false_all"])
            cap = max(s["false_share"], FALSE_MAX)
            pareto_best = float(rec_all[fal_all <= cap + 1e-9].max())
            per_cell[c] = {"pareto_best_recall": pareto_best, "pareto_shortfall": pareto_best - s["recall"],
                           "setting": settings, "setting_str": " + ".join(setting_str(tuple(round(v, 1) for v in s_))
                                                                          for s_ in settings),
                           "recall": s["recall"], "false_share": s["false_share"], "counts": s,
                           "best_recall": b["recall"], "shortfall": b["recall"] - s["recall"],
                           "holdout_recall": h["recall"], "holdout_best_recall": hb["recall"],
                           "holdout_false_share": h.get("false_share", float("nan"))}
            if len(CELLS[c]) > 1:
                per_cell[c]["halves"] = {
                    p["name"]: summarise(sum(ev[(c, k)][name][i]["counts"] for k in grid_days))
                    for i, p in enumerate(CELLS[c])}
        worst = max(per_cell, key=lambda c: per_cell[c]["shortfall"])
        worst_false = max(per_cell, key=lambda c: per_cell[c]["false_share"])
        met = sum(1 for c, t in TARGETS.items() if c in per_cell and per_cell[c]["recall"] >= t
                  and per_cell[c]["false_share"] <= FALSE_MAX)
        worst_p = max(per_cell, key=lambda c: per_cell[c]["pareto_shortfall"])
        candidates[name] = {"cells": per_cell, "max_shortfall": per_cell[worst]["shortfall"],
                            "max_pareto_shortfall": per_cell[worst_p]["pareto_shortfall"],
                            "max_pareto_shortfall_cell": worst_p,
                            "n_false_over_cap": sum(v["false_share"] > FALSE_MAX for v in per_cell.values()),
                            "ok_cells": sum(v["false_share"] <= FALSE_MAX and v["shortfall"] <= 0.01
                                            for v in per_cell.values()),
                            "max_shortfall_cell": worst, "targets_met": met,
                            "within_1pt_all": all(v["shortfall"] <= 0.01 for v in per_cell.values()),
                            "max_false": per_cell[worst_false]["false_share"], "max_false_cell": worst_false}

    diagnostics = {}
    for c in cell_list:
        s = summarise(pooled(c, "best fixed", "counts", grid_days))
        lo = summarise(pooled(c, "best fixed", "counts_long", grid_days))
        wi = summarise(pooled(c, "best fixed", "counts_wide", grid_days))
        st = np.concatenate([row["start_err"] for k in grid_days for row in ev[(c, k)]["best fixed"]])
        en = np.concatenate([row["end_err"] for k in grid_days for row in ev[(c, k)]["best fixed"]])
        diagnostics[c] = {**s, "recall_long": lo["recall"], "n_true_long_long": lo["n_true_long"],
                          "recall_wide": wi["recall"], "start_p95": float(np.percentile(np.abs(st), 95)),
                          "end_p95": float(np.percentile(np.abs(en), 95)),
                          "start_median": float(np.median(st)), "end_median": float(np.median(en)),
                          # start/end errors are paired per matched long true visit: recall at a fixed tolerance
                          "recall_tol60s": float(np.sum((np.abs(st) <= 60) & (np.abs(en) <= 60))) / s["n_true_long"],
                          "recall_tol120s": float(np.sum((np.abs(st) <= 120) & (np.abs(en) <= 120))) / s["n_true_long"]}
        cur = summarise(pooled(c, "current defaults", "counts", grid_days))
        assert cur["n_recovered"] == grid[c]["current"]["n_recovered"], "eval and grid disagree"

    res = {
        "what": "issue 17 grid study: best fixed dwell settings per radio condition, fits and scaling candidates",
        "code_commit": (HERE / "src_commit.txt").read_text().strip(),
        "command": " ".join([sys.executable] + sys.argv),
        "days": args.days, "holdout": args.holdout, "officers": args.officers, "procs": args.procs,
        "drop_share": DROP_SHARE, "false_max": FALSE_MAX, "near_pt": NEAR_PT,
        "grid_axes": {"exit_margin_m": MARGINS_M, "exit_grace_s": GRACES_S, "max_gap_s": GAPS_S,
                      "visit_bounds": "midpoint"},
        "settings_order": SETTINGS, "cells": {c: CELLS[c] for c in cell_list}, "targets": TARGETS,
        "grid": grid, "fits": fits, "candidates": candidates, "diagnostics": diagnostics,
        "seconds": {"grid": t_grid, "eval": t_eval, "total": time.perf_counter() - t_start},
        "python": platform.python_version(),
    }
    notes = HERE / "notes.md"
    res["notes_md"] = notes.read_text() if notes.exists() else ""

    def default(o):
        if isinstance(o, (np.integer,)):
            return int(o)
        if isinstance(o, (np.floating,)):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(type(o))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=default))
    write_summary(res, args.out / "summary.md")
    print(f"done in {res['seconds']['total']:.0f} s; wrote {args.out / 'results.json'} and summary.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
