"""Prototype (issue 17, not the engine): a centred running median of each officer's fixes (half-width H fixes) before
the rules, and each reported visit's bounds extended over adjacent fixes within BAND x stated accuracy of its hot spot
that lie in no other hot spot. Post-processing in Python, to size the gain before building it into kernels.

    .venv/bin/python benchmarks/results/accuracy-grid-study/prototype_presence.py 60/30,120/50 0,0.5,1 DAYS H
"""
import sys; from pathlib import Path; ROOT = Path(__file__).resolve().parents[3]; sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "benchmarks"))
import numpy as np, shapely, geo
from bench_accuracy import simulated_days
from stream.accuracy import reported_visits, score, AccuracyScore
from stream.engine import RuleSettings, Visits
hs = geo.load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)
polys = list(hs.geometries_metric)

def other(a, b, j):
    pt = shapely.Point(a, b)
    return any(Q.contains(pt) for g, Q in enumerate(polys) if g != int(REP.hotspot[j]))

def extend(sim, reg, rep, band_k, gap_s):
    # per officer sorted unique fixes
    codes = np.array([reg.code_of(o) for o in sim.officer_id]) if hasattr(reg, "code_of") else None
    global REP; REP = rep
    out = [a.copy() for a in rep]
    by_off = {}
    names = sim.officer_id.astype(str)
    for name in np.unique(names):
        sel = np.flatnonzero(names == name)
        ts = sim.ts_ms[sel]; u, first = np.unique(ts, return_index=True)
        x, y = hs.project(sim.lon[sel][first], sim.lat[sel][first])
        by_off[name] = (u, x, y, sim.accuracy_m[sel][first])
    for j in range(len(rep.officer)):
        name = reg.id_of(int(rep.officer[j])); ts, x, y, acc = by_off[name]
        P = polys[int(rep.hotspot[j])]
        band = band_k * acc
        # first inside fix index: fix at/after start
        s = np.searchsorted(ts, rep.start_ms[j]); e = np.searchsorted(ts, rep.end_ms[j], side="right") - 1
        s0, e0 = s, e
        while s - 1 >= 0 and ts[s] - ts[s - 1] <= gap_s * 1000 and P.distance(shapely.Point(x[s-1], y[s-1])) <= band[s-1] and not other(x[s-1], y[s-1], j):
            s -= 1
        while e + 1 < len(ts) and ts[e + 1] - ts[e] <= gap_s * 1000 and P.distance(shapely.Point(x[e+1], y[e+1])) <= band[e+1] and not other(x[e+1], y[e+1], j):
            e += 1
        if s != s0:
            out[2][j] = ts[s] - ((ts[s] - ts[s-1]) // 2 if s > 0 and ts[s] - ts[s-1] <= gap_s*1000 else 0)
        if e != e0:
            out[3][j] = ts[e] + ((ts[e+1] - ts[e]) // 2 if e + 1 < len(ts) and ts[e+1] - ts[e] <= gap_s*1000 else 0)
    return Visits(*out)

import dataclasses
def smooth(sim, h, gap_s):
    order = np.lexsort((sim.ts_ms, sim.officer_id.astype(str)))
    off = sim.officer_id[order]; ts = sim.ts_ms[order]; lat = sim.lat[order].copy(); lon = sim.lon[order].copy()
    nlat, nlon = lat.copy(), lon.copy()
    n = len(ts)
    # segment starts: new officer or gap
    seg = np.ones(n, bool); seg[1:] = (off[1:] != off[:-1]) | ((ts[1:] - ts[:-1]) > gap_s * 1000)
    segid = np.cumsum(seg) - 1
    starts = np.flatnonzero(seg); ends = np.r_[starts[1:], n]
    for s, e in zip(starts, ends):
        for c in range(s, e):
            k = min(h, c - s, e - 1 - c)
            nlat[c] = np.median(lat[c - k:c + k + 1]); nlon[c] = np.median(lon[c - k:c + k + 1])
    out_lat = np.empty(n); out_lon = np.empty(n)
    out_lat[order] = nlat; out_lon[order] = nlon
    return dataclasses.replace(sim, lat=np.round(out_lat, 6), lon=np.round(out_lon, 6))


H = int(sys.argv[4]) if len(sys.argv) > 4 else 0
for iv, err in [tuple(map(int, c.split("/"))) for c in sys.argv[1].split(",")]:
    days = simulated_days(hs, {"interval_s": iv, "error_m": err, "drop_share": 0.05}, int(sys.argv[3]) if len(sys.argv) > 3 else 3, 30)
    for k in [float(v) for v in sys.argv[2].split(",")]:
        scores = []
        for sim, (true, reg) in days:
            rules = RuleSettings()
            if H: sim = smooth(sim, H, max(180, 4 * iv))
            rep = reported_visits(sim, hs, rules, reg)
            if k > 0:
                rep = extend(sim, reg, rep, k, max(180, 4 * iv))
            scores.append(score(true, rep, iv))
        s = AccuracyScore.combine(scores)
        print(f"h={H} {iv}s/{err}m band {k} x acc: recall {s.recall:.4f} false {s.false_share:.4f} off {s.n_matched_off} split {s.n_missed_split} of {s.n_true_long}", flush=True)
