"""Streaming benchmark: the engine against the raw Kafka consumer, latency, and scaling (issue 5).

    .venv/bin/python benchmarks/bench_stream.py [--quick]

Each configuration is one ``hotspot-dwell bench`` run (stream/bench.py) on
the embedded broker: a patrol load produced one fix per message, the raw
aiokafka consume rate and the workers' sustained fixes/s on the same topic
in the same run, the published visits checked against the replay. The base
configuration (1,000 hot spots, 100,000 officers, one worker) also measures
fix-to-``visit.opened`` latency at 1k, 5k, 20k and 50k fixes/s offered, beside a
pass-through forwarder on the same broker (the floor; stream/bench_latency.py). The
``sustained`` configuration is the base one with five times the fixes (50 an
officer instead of 10): half a minute of fix flow instead of ten seconds that
end with the close of every officer's visit. The sweeps vary workers (1, 2),
officers (1,000 to 1,000,000) and hot spots (57, 1,000, 100,000). Memory per
officer is the growth of the worker's resident memory from 1,000 to 1,000,000
officers, divided by the officers added.

Writes benchmarks/results/stream.json and stream.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from argparse import Namespace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.bench_replay import machine  # noqa: E402
from stream.bench import run  # noqa: E402

RESULTS = HERE / "results"


def configs(quick: bool) -> list[dict]:
    fixes = 200_000 if quick else 1_000_000
    base = dict(hotspots=1000, officers=100_000 if not quick else 20_000, fixes=fixes, workers=1)
    out = [dict(base, name="base", rates="1000,5000,20000,50000")]
    # Sustained: five times the fixes for the same force (50 an officer, 25 minutes each at one per 30 s), so
    # the run is fix flow for half a minute rather than ten seconds ending in the close of every visit at once.
    out.append(dict(base, name="sustained", fixes=5 * fixes, rates=""))
    out.append(dict(base, name="workers-2", workers=2, rates=""))
    for n in ((1_000, 10_000, 1_000_000) if not quick else (1_000,)):
        out.append(dict(base, name=f"officers-{n}", officers=n, rates=""))
    for h in ((57, 100_000) if not quick else (57,)):
        out.append(dict(base, name=f"hotspots-{h}", hotspots=h, rates=""))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small loads, for trying the benchmark out")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per offered rate")
    ap.add_argument("--skip", default="", help="comma-separated configuration names to leave out")
    ap.add_argument("--only", default="", help="comma-separated configuration names to run (default: all)")
    ap.add_argument("--gateway-batch-ms", type=int, help="the latency load's gateway writes a batch per partition every this many ms (default: 50)")
    ap.add_argument("--latency-repeat", type=int, help="latency runs per offered rate (default: 3)")
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs per configuration (median reported)")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    work = HERE / "work" / "stream"
    runs = []
    started = time.time()
    only = set(filter(None, args.only.split(",")))
    for cfg in [c for c in configs(args.quick) if c["name"] not in skip and (not only or c["name"] in only)]:
        print(f"== {cfg['name']}: {cfg['hotspots']} hot spots, {cfg['officers']:,} officers, {cfg['fixes']:,} fixes, "
              f"{cfg['workers']} worker(s)", flush=True)
        ns = Namespace(brokers=None, hotspots=cfg["hotspots"], officers=cfg["officers"], fixes=cfg["fixes"],
                       workers=cfg["workers"], partitions=4, rates=cfg["rates"], seconds=args.seconds,
                       workdir=str(work / cfg["name"]), repeat=args.repeat,
                       gateway_batch_ms=args.gateway_batch_ms, latency_repeat=args.latency_repeat)
        result = run(ns)
        t = result["throughput"]
        print(f"   engine {t['engine_fixes_per_s']:,} fixes/s, raw {t['raw_consume_fixes_per_s']:,} "
              f"({t['engine_over_raw']:.1%}); visits equal to replay: {result['check']['equal']}", flush=True)
        for lat in result["latency"]:
            floor = lat["floor"]
            print(f"   {lat['offered_fixes_per_s']:,.0f}/s offered: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms "
                  f"(pass-through floor: p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms)", flush=True)
        runs.append(dict(result, name=cfg["name"]))
    by = {r["name"]: r for r in runs}
    summary = {}
    if "officers-1000" in by and "officers-1000000" in by:
        small, big = by["officers-1000"]["throughput"], by["officers-1000000"]["throughput"]
        added = big["officers"] - small["officers"]
        # Resident memory after the load (the state) and at its peak (with a checkpoint's copy in flight).
        summary["bytes_per_officer"] = round(
            (max(big["worker_rss_bytes"]) - max(small["worker_rss_bytes"])) / added, 1)
        summary["state_bytes_per_officer"] = big.get("state_bytes_per_officer")
        summary["peak_bytes_per_officer"] = round(
            (max(big["worker_peak_rss_bytes"]) - max(small["worker_peak_rss_bytes"])) / added, 1)
    result = {"benchmark": "stream", "runs": runs, "summary": summary, "skipped": sorted(skip), "machine": machine(),
              "seconds": round(time.time() - started)}
    RESULTS.mkdir(exist_ok=True)
    name = "stream-quick" if args.quick else "stream"
    if only:  # a partial sweep never overwrites the full results
        name += "-" + "-".join(sorted(only))
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    if "base" in by:
        draw(runs, RESULTS / f"{name}.png")
        draw_latency_by_second(by["base"]["latency"], RESULTS / f"{name}-latency.png")
        print(f"wrote {RESULTS / (name + '.json')}, {name}.png and {name}-latency.png")
    else:
        print(f"wrote {RESULTS / (name + '.json')}")
    return 0 if all(r["check"]["equal"] for r in runs) else 1


def draw_latency_by_second(latency: list[dict], path: Path) -> None:
    """Each latency run's p99 second by second, engine against the floor: the broker's drift shows as both rising."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(latency), figsize=(5 * len(latency), 4), sharey=True, squeeze=False)
    for ax, lat in zip(axes[0], latency):
        for i, run in enumerate(lat["runs"]):
            for key, style, alpha in (("engine", "-", 1.0), ("floor", "--", 0.5)):
                rows = [r for r in run[key]["by_second"] if r[2] is not None]
                ax.plot([r[0] for r in rows], [r[2] for r in rows], style, color=f"C{i}", alpha=alpha,
                        label=f"run {i + 1}, {key}")
        ax.axhline(50, color="grey", lw=0.8)
        ax.set_title(f"{lat['offered_fixes_per_s']:,.0f} fixes/s offered (gateway batches every {lat['gateway_batch_ms']} ms)",
                     loc="left", fontsize=9)
        ax.set_xlabel("second of the run")
    axes[0][0].set_ylabel("p99 fix to visit.opened, ms")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {r["name"]: r for r in runs}
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    base = by["base"]
    lat = [x for x in base["latency"] if x["p50_ms"] is not None]
    ax = axes[0]
    rates = [x["offered_fixes_per_s"] for x in lat]
    ax.plot(rates, [x["achieved_offer_per_s"] for x in lat], "o-", label="offered (achieved by the producer)")
    ax.axhline(base["throughput"]["engine_fixes_per_s"], color="C1", ls="--", label="engine, sustained")
    ax.axhline(base["throughput"]["raw_consume_fixes_per_s"], color="C2", ls=":", label="raw aiokafka consumer")
    ax = axes[1]
    for i, (key, style) in enumerate((("p50_ms", "o-"), ("p99_ms", "s-"), ("max_ms", "^:"))):
        ax.plot(rates, [x[key] for x in lat], style, color=f"C{i}", label=key.replace("_ms", ""))
        if all("floor" in x for x in lat) and key != "max_ms":
            ax.plot(rates, [x["floor"][key] for x in lat], style, color=f"C{i}", alpha=0.35, lw=3,
                    label=key.replace("_ms", "") + ", pass-through floor")
    ax.axhline(50, color="grey", lw=0.8)
    for ax, ylabel, title in ((axes[0], "fixes/s", "throughput, one worker"),
                              (axes[1], "fix to visit.opened, ms", "latency, one worker (reorder window 0) and the broker's floor")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered fixes/s")
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        ax.legend(fontsize=8)
    ax = axes[2]
    off = sorted((r["throughput"]["officers"], r["throughput"]) for r in runs
                 if r["name"].startswith("officers-") or r["name"] == "base")
    ax.plot([o for o, _ in off], [t["engine_fixes_per_s"] for _, t in off], "o-", label="engine fixes/s")
    ax.set_xscale("log")
    ax.set_xlabel("officers (1,000 hot spots)")
    ax.set_ylabel("fixes/s")
    ax2 = ax.twinx()
    ax2.plot([o for o, _ in off], [max(t["worker_peak_rss_bytes"]) / 2**20 for _, t in off], "s:", color="C3",
             label="peak RSS")
    ax2.set_ylabel("worker peak RSS, MiB")
    ax.set_title("scaling with officers", loc="left")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    ax = axes[3]
    labels, values = [], []
    for name in ("hotspots-57", "base", "hotspots-100000", "workers-2"):
        if name in by:
            t = by[name]["throughput"]
            labels.append(f"{t['hotspots']:,} hot spots\n{t['workers']} worker(s)")
            values.append(t["engine_fixes_per_s"])
    ax.bar(range(len(values)), values)
    ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=20)
    ax.set_ylabel("engine fixes/s")
    ax.set_title("hot spots and workers", loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

