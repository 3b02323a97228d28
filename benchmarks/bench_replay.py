"""Whole-replay rate on a 10-million-fix CSV, parsing included, with peak memory.

    python benchmarks/bench_replay.py [--fixes 10000000] [--hotspots 1000]

The file is generated once (seeded) under benchmarks/work/ and reused. The
replay runs in a child process, so its peak memory is its own; a small
warm-up replay in the same child keeps JIT loading out of the timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from geo.synthetic import random_hotspots  # noqa: E402
from geo.projection import MetricProjection  # noqa: E402

WORK = HERE / "work"
RESULTS = HERE / "results"
DAY0_MS = 1_709_272_800_000  # 2024-03-01T06:00:00Z


def write_track_csv(path: Path, n_fixes: int, n_officers: int, seed: int, box_m: float = 20_000.0) -> None:
    """Officers random-walking over the hot spot box, reporting every 15-45 s."""
    from geo.synthetic import NOTTINGHAM_BNG_M

    rng = np.random.default_rng(seed)
    per = n_fixes // n_officers
    proj = MetricProjection("EPSG:27700")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.write("officer_id,ts,lat,lon,accuracy_m\n")
        # Officers in blocks, then rows sorted by time within a block: the
        # file interleaves officers like an export does.
        block = 2_000
        for b0 in range(0, n_officers, block):
            k = min(block, n_officers - b0)
            dt_s = rng.uniform(15, 45, (k, per))
            ts = DAY0_MS + (np.cumsum(dt_s, axis=1) * 1000).astype(np.int64)
            x = NOTTINGHAM_BNG_M[0] + rng.uniform(-box_m / 2, box_m / 2, (k, 1)) + np.cumsum(rng.normal(0, 25, (k, per)), axis=1)
            y = NOTTINGHAM_BNG_M[1] + rng.uniform(-box_m / 2, box_m / 2, (k, 1)) + np.cumsum(rng.normal(0, 25, (k, per)), axis=1)
            off = np.repeat(np.arange(b0, b0 + k), per)
            order = np.argsort(ts.ravel(), kind="stable")
            lon, lat = proj.to_wgs84(x.ravel()[order], y.ravel()[order])
            t_text = np.datetime_as_string(ts.ravel()[order].astype("datetime64[ms]"), unit="s")
            acc = rng.integers(5, 30, off.size)
            fh.writelines(f"officer-{o:06d},{t}Z,{la:.6f},{lo:.6f},{a}\n"
                          for o, t, la, lo, a in zip(off[order].tolist(), t_text.tolist(), lat.tolist(),
                                                     lon.tolist(), acc.tolist()))
            print(f"  generated {min(b0 + k, n_officers):,}/{n_officers:,} officers", file=sys.stderr, flush=True)
    tmp.rename(path)


CHILD = r"""
import json, sys, time
from stream.replay import replay, peak_rss_bytes
from stream.readers import read_fixes
from stream.fixes import OfficerRegistry
from geo.hotspots import load_hotspots
hs = load_hotspots(sys.argv[1])
replay(sys.argv[3], hs)  # warm-up: JIT cache load, first-touch allocations
t0 = time.perf_counter()
r = replay(sys.argv[2], hs, progress=True)
dt = time.perf_counter() - t0
rss = peak_rss_bytes()
# Reading and parsing alone, same file, same process: the floor under a replay.
t1 = time.perf_counter()
n_read = sum(len(f) + len(b) for f, b in read_fixes(sys.argv[2], OfficerRegistry()))
dt_read = time.perf_counter() - t1
print(json.dumps({"seconds": dt, "fixes": r.stats.fixes_read, "rejected": r.stats.fixes_rejected,
                  "visits": len(r.visits), "patrols": len(r.patrols), "peak_rss_bytes": rss,
                  "read_only_seconds": dt_read, "read_only_fixes": n_read}))
"""


def machine() -> dict:
    model = ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numba

    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(), "numba": numba.__version__,
            "numpy": np.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fixes", type=int, default=10_000_000)
    ap.add_argument("--officers", type=int, default=20_000)
    ap.add_argument("--hotspots", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    hs_path = WORK / f"hotspots_{args.hotspots}.geojson"
    if not hs_path.exists():
        hs_path.write_text(json.dumps(random_hotspots(args.hotspots, seed=args.seed)))
    fixes_path = WORK / f"fixes_{args.fixes}_{args.officers}_{args.seed}.csv"
    if not fixes_path.exists():
        print(f"generating {fixes_path} ...", file=sys.stderr)
        write_track_csv(fixes_path, args.fixes, args.officers, args.seed)
    warm_path = WORK / "fixes_warmup.csv"
    if not warm_path.exists():
        write_track_csv(warm_path, 20_000, 200, args.seed + 1)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(hs_path), str(fixes_path), str(warm_path)],
                          cwd=HERE.parent, stdout=subprocess.PIPE, text=True, check=True)
    wall = time.perf_counter() - t0
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {
        "benchmark": "replay",
        "file_bytes": fixes_path.stat().st_size,
        "fixes": child["fixes"],
        "officers": args.officers,
        "hotspots": args.hotspots,
        "replay_seconds": round(child["seconds"], 3),
        "fixes_per_s": round(child["fixes"] / child["seconds"]),
        "peak_rss_mib": round(child["peak_rss_bytes"] / 2**20, 1),
        "read_only_fixes_per_s": round(child["read_only_fixes"] / child["read_only_seconds"]),
        "replay_over_read_only": round(child["read_only_seconds"] / child["seconds"], 3),
        "visits": child["visits"],
        "patrols": child["patrols"],
        "rejected": child["rejected"],
        "child_wall_seconds": round(wall, 2),
        "machine": machine(),
    }
    out = RESULTS / "replay.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    draw(result, RESULTS / "replay.png")
    print(json.dumps(result, indent=2))


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3), dpi=110)
    labels = ["read + parse only", "whole replay"]
    rates = [result["read_only_fixes_per_s"] / 1e6, result["fixes_per_s"] / 1e6]
    ax.barh(labels, rates, color=["#9aa5b1", "#1f7a4d"])
    ax.axvline(1.0, color="#c0392b", ls="--", lw=1, label="target: 1 M fixes/s")
    for i, r in enumerate(rates):
        ax.text(r, i, f" {r:.2f} M/s", va="center")
    ax.set_xlabel("million fixes per second")
    ax.set_title(f"Replay of a {result['fixes'] / 1e6:.0f}M-fix CSV, {result['hotspots']:,} hot spots, "
                 f"{result['machine']['cores']} cores; peak {result['peak_rss_mib']:.0f} MiB", fontsize=9)
    ax.legend(loc="lower right", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
