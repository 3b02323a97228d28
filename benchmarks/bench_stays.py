"""What stay points cost the engine: fixes a second with the adaptive defaults, stays on and off, in one run.

    .venv/bin/python benchmarks/bench_stays.py [--officers 20000] [--fixes-per-officer 60] [--rounds 3]

Officers alternate between standing still (a stay, with 5-30 m of error) and
walking, reporting every 10-60 s, over 1,000 synthetic hot spots; the fixes are
fed in time order in chunks of 20,000, as stage 1 reads them, and after every
chunk the live view is asked for the visits it opened (as stage 1 does for
``visit.opened``). Rounds alternate A and B so that a noisy neighbour on the
shared machine hits both; the figure is the ratio of medians. Writes
benchmarks/results/stays-ab.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from geo.hotspots import HotspotSet  # noqa: E402
from geo.synthetic import NOTTINGHAM_BNG_M, random_hotspots  # noqa: E402
from stream.engine import DwellEngine, RuleSettings  # noqa: E402
from stream.fixes import FixColumns  # noqa: E402

DAY0_MS = 1_709_272_800_000
CHUNK = 20_000


def fixes(n_officers: int, per: int, seed: int, proj) -> FixColumns:
    """Every officer's fixes: stays of 5-20 reports and walks between them, interleaved in time order."""
    rng = np.random.default_rng(seed)
    interval = rng.uniform(10, 60, (n_officers, 1))
    ts = DAY0_MS + (np.cumsum(np.broadcast_to(interval, (n_officers, per)), axis=1) * 1000).astype(np.int64)
    walking = (np.arange(per)[None, :] // rng.integers(5, 20, (n_officers, 1))) % 2 == 1
    step = np.where(walking, 1.4, 0.0) * interval  # metres between reports
    heading = rng.uniform(0, 2 * np.pi, (n_officers, per))
    x = NOTTINGHAM_BNG_M[0] + rng.uniform(-10_000, 10_000, (n_officers, 1)) + np.cumsum(step * np.cos(heading), axis=1)
    y = NOTTINGHAM_BNG_M[1] + rng.uniform(-10_000, 10_000, (n_officers, 1)) + np.cumsum(step * np.sin(heading), axis=1)
    error = rng.uniform(5, 30, (n_officers, 1))
    x = x + rng.normal(0, 1, x.shape) * error
    y = y + rng.normal(0, 1, y.shape) * error
    order = np.argsort(ts.ravel(), kind="stable")
    lon, lat = proj.to_wgs84(x.ravel()[order], y.ravel()[order])
    officer = np.repeat(np.arange(n_officers), per)[order]
    acc = np.broadcast_to(error, (n_officers, per)).ravel()[order]
    return FixColumns(np.arange(officer.size), officer.astype(np.int64), ts.ravel()[order], lat, lon, acc)


def run(hotspots, cols: FixColumns, rules: RuleSettings) -> tuple[float, int]:
    """Seconds to feed every chunk (and ask for the visits opened), and the visits closed."""
    engine = DwellEngine(hotspots, rules)
    closed = 0
    t0 = time.perf_counter()
    for a in range(0, len(cols.ts_ms), CHUNK):
        out = engine.step(cols.take(np.arange(a, min(a + CHUNK, len(cols.ts_ms)))))
        engine.opened_visits()
        closed += len(out.visits.start_ms)
    closed += len(engine.finish().visits.start_ms)
    return time.perf_counter() - t0, closed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--officers", type=int, default=20_000)
    ap.add_argument("--fixes-per-officer", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    hotspots = HotspotSet.from_geojson_dict(random_hotspots(1_000, seed=1), source="synthetic", crs="EPSG:27700")
    cols = fixes(args.officers, args.fixes_per_officer, 7, hotspots.projection)
    variants = {"stays on (default)": RuleSettings(), "stays off": RuleSettings(stay_min_fixes=0)}
    run(hotspots, cols.take(np.arange(CHUNK)), RuleSettings())  # compile and load the kernels
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    visits = {}
    for r in range(args.rounds):
        for name, rules in variants.items():
            sec, visits[name] = run(hotspots, cols, rules)
            seconds[name].append(sec)
            print(f"round {r + 1}/{args.rounds} {name}: {len(cols.ts_ms) / sec:,.0f} fixes/s", file=sys.stderr)
    rate = {k: len(cols.ts_ms) / float(np.median(v)) for k, v in seconds.items()}
    on, off = rate["stays on (default)"], rate["stays off"]
    result = {"what": __doc__.splitlines()[0], "fixes": len(cols.ts_ms), "officers": args.officers,
              "hotspots": 1_000, "chunk": CHUNK, "rounds": args.rounds, "seconds": seconds,
              "fixes_per_s_median": rate, "ratio_on_to_off": on / off, "visits_closed": visits,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "python": platform.python_version()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stays-ab.json").write_text(json.dumps(result, indent=1))
    print(f"stays on {on:,.0f} fixes/s, off {off:,.0f} fixes/s: ratio {on / off:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
