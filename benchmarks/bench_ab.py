"""Before/after streaming benchmark of two checkouts of the engine, alternating, in one run (issue 16).

    git worktree add /tmp/hd-before 6014100
    git worktree add --detach /tmp/hd-after HEAD
    .venv/bin/python benchmarks/bench_ab.py --before /tmp/hd-before --after /tmp/hd-after

The bench code of this checkout (stream/bench.py, stream/bench_latency.py:
load, broker, raw consumer, the visits' check, the latency probes) drives
workers started with ``python -m stream.cli worker`` and their working
directory set to the checkout under test, so each worker imports that
checkout's ``stream``, ``kernels`` and ``geo`` (``-m`` puts the working
directory first on ``sys.path``; each run records the worker's cwd and
whether it has the after code's ``hotspot_dwell_fetch_fast_path`` gauge).

- ``base`` (1,000,000 fixes) and ``sustained`` (5,000,000 fixes): 1,000 hot
  spots, 100,000 officers, one worker, 4 partitions. Each configuration is
  produced once to a fresh embedded broker; one discarded warm-up run per
  checkout (numba compiles each checkout's kernels once, beside its source),
  then ``--repeat`` runs of each, alternating AB, BA, AB, ... (so a drift of
  the broker falls on both alike), the raw aiokafka rate measured just
  before each run. Every run's visits are compared with the replay of the
  same fixes by the same checkout.
- latency: fix-to-``visit.opened`` at 5,000 fixes/s offered, as
  ``hotspot-dwell bench`` measures it (stream/bench_latency.py), one engine
  run and one pass-through floor run per checkout and repetition, each on a
  fresh broker, the checkouts alternating the same way, after one warm-up
  engine run per checkout.

Writes benchmarks/results/stream-ab-issue16.json and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

import stream.bench as sb  # noqa: E402
from benchmarks.bench_replay import machine  # noqa: E402
from stream.broker import EmbeddedBroker  # noqa: E402

RESULTS = HERE / "results"
NAME = "stream-ab-issue16"

_REPLAY = """
import json, sys
from geo.hotspots import HotspotSet
from stream.replay import replay
import stream
doc = json.load(open(sys.argv[2]))
r = replay(sys.argv[1], HotspotSet.from_geojson_dict(doc, source=sys.argv[2]), progress=False)
v = r.visits
rows = list(zip(v["officer_id"].tolist(), v["hotspot_id"].tolist(), v["start"].tolist(), v["end"].tolist(),
                v["fixes"].tolist()))
json.dump({"stream_file": stream.__file__, "visits": rows}, open(sys.argv[3], "w"))
"""


def tree_replay(tree: Path, fixes: Path, hotspots: Path, out: Path) -> set[tuple]:
    """The replay of ``fixes`` by the checkout at ``tree`` (a subprocess importing that checkout)."""
    subprocess.run([sys.executable, "-c", _REPLAY, str(fixes), str(hotspots), str(out)], cwd=tree, check=True)
    doc = json.loads(out.read_text())
    if not doc["stream_file"].startswith(str(tree)):
        raise RuntimeError(f"the replay in {tree} imported {doc['stream_file']}")
    return {tuple(r) for r in doc["visits"]}


def scrape(port: int) -> dict[str, float]:
    """Every unlabelled sample of a worker's metrics endpoint."""
    out = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
    return out


def throughput_run(bootstrap: str, load, prefix: str, tree: Path, app_id: str, want: set[tuple], workdir: Path,
                   partitions: int) -> dict:
    """One fresh worker of ``tree`` (a new app) over the whole topic: stream.bench.throughput's measurement."""
    n = len(load.records) + len(load.closing)
    raw = asyncio.run(sb.raw_consume_rate(bootstrap, prefix + "location-fixes", n, partitions))
    start = asyncio.run(sb._end_offsets(bootstrap, prefix + "dwell-intervals"))
    sb.REPO = tree  # the worker's cwd: the checkout it imports
    w = sb.Worker(bootstrap, prefix, load.hotspots_path, workdir, partitions, app_id, app_id=app_id)
    try:
        cwd = os.readlink(f"/proc/{w.proc.pid}/cwd")
        sb.wait_ready([w])
        cpu0 = w.cpu_s()
        visits, last_ms = asyncio.run(sb._wait_for_visits(bootstrap, prefix, len(want), [w], workdir, start))
        cpu = w.cpu_s() - cpu0
        rss, peak = w.rss_bytes(), w.peak_rss_bytes()
        m = scrape(w.port)
    finally:
        w.stop()
    seconds = last_ms / 1000.0 - m["hotspot_dwell_first_fix_timestamp_seconds"]
    return {"tree": str(tree), "worker_cwd": cwd, "app_id": app_id, "raw_consume_fixes_per_s": round(raw),
            "engine_fixes_per_s": round(n / seconds), "engine_over_raw": round(n / seconds / raw, 4),
            "seconds": round(seconds, 2), "worker_cpu_s": round(cpu, 2), "worker_rss_bytes": rss,
            "worker_peak_rss_bytes": peak, "fetch_fast_path_gauge": m.get("hotspot_dwell_fetch_fast_path"),
            "visits_closed_by_silence": m.get("hotspot_dwell_visits_closed_by_silence_total"),
            "check": {"replay_visits": len(want), "stream_visits": len(visits), "equal": visits == want,
                      "missing": len(want - visits), "extra": len(visits - want)}}


def order(rep: int, trees: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    return trees if rep % 2 == 0 else trees[::-1]


def throughput_config(name: str, fixes: int, args, trees, workdir: Path, log) -> dict:
    wd = workdir / name
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    load = sb.make_load(wd, args.hotspots, args.officers, fixes, args.partitions)
    path = wd / "fixes.jsonl"
    path.write_bytes(b"".join(v + b"\n" for _, v in load.records + load.closing))
    want = {label: tree_replay(tree, path, load.hotspots_path, wd / f"replay-{label}.json") for label, tree in trees}
    log(f"{name}: load and replays in {time.time() - t0:.0f} s; replay visits "
        + ", ".join(f"{k} {len(v):,}" for k, v in want.items())
        + f"; the two replays equal: {want['before'] == want['after']}")
    runs, warmups = [], []
    with EmbeddedBroker(log_path=wd / "broker.log") as broker:
        prefix = f"ab{int(time.time())}."
        asyncio.run(sb.create_topics(broker.bootstrap, [prefix + "location-fixes"], args.partitions))
        t1 = time.time()
        asyncio.run(sb.produce_all(broker.bootstrap, prefix + "location-fixes", load.records + load.closing))
        log(f"{name}: produced {len(load.records) + len(load.closing):,} fixes in {time.time() - t1:.0f} s")
        if args.warmup:
            for label, tree in trees:
                r = throughput_run(broker.bootstrap, load, prefix, tree, f"{prefix[:-1]}-warm-{label}", want[label],
                                   wd, args.partitions)
                warmups.append(dict(r, label=label))
                log(f"{name} warm-up {label}: {r['engine_fixes_per_s']:,} fixes/s, check {r['check']['equal']}")
        for rep in range(args.repeat):
            for label, tree in order(rep, trees):
                r = throughput_run(broker.bootstrap, load, prefix, tree, f"{prefix[:-1]}-r{rep}-{label}", want[label],
                                   wd, args.partitions)
                runs.append(dict(r, label=label, repetition=rep))
                log(f"{name} rep {rep} {label}: {r['engine_fixes_per_s']:,} fixes/s (raw {r['raw_consume_fixes_per_s']:,}, "
                    f"{r['seconds']} s, cpu {r['worker_cpu_s']} s), check {r['check']['equal']}, "
                    f"fast-path gauge {r['fetch_fast_path_gauge']}, cwd {r['worker_cwd']}")
    return {"name": name, "fixes": len(load.records) + len(load.closing), "officers": args.officers,
            "hotspots": args.hotspots, "partitions": args.partitions, "workers": 1,
            "replays_equal": want["before"] == want["after"], "replay_visits": {k: len(v) for k, v in want.items()},
            "warmups": warmups, "runs": runs, "seconds": round(time.time() - t0)}


def latency_block(args, trees, workdir: Path, log) -> dict:
    from stream.bench_latency import GATEWAY_BATCH_MS, latency

    wd = workdir / "latency"
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    load = sb.make_load(wd, args.hotspots, args.officers, args.fixes, args.partitions)
    runs, warmups = [], []

    def one(label: str, tree: Path, tag: str, seconds: float) -> dict:
        sb.REPO = tree
        out = latency(None, load, [args.rate], seconds, args.partitions, wd, f"l{int(time.time())}{tag}.",
                      GATEWAY_BATCH_MS, 1)[0]
        run = out["runs"][0]
        return {"label": label, "tree": str(tree), "offered_fixes_per_s": args.rate,
                "gateway_batch_ms": out["gateway_batch_ms"], "warm_fixes": out["warm_fixes"],
                "engine": run["engine"], "floor": run["floor"]}

    if args.warmup:
        for label, tree in trees:
            r = one(label, tree, f"w{label[0]}", 3.0)
            warmups.append(r)
            log(f"latency warm-up {label}: p50 {r['engine']['p50_ms']} p99 {r['engine']['p99_ms']} ms")
    for rep in range(args.repeat):
        for label, tree in order(rep, trees):
            r = one(label, tree, f"r{rep}{label[0]}", args.seconds)
            runs.append(dict(r, repetition=rep))
            e, f = r["engine"], r["floor"]
            log(f"latency rep {rep} {label}: engine p50 {e['p50_ms']} p99 {e['p99_ms']} max {e['max_ms']} ms "
                f"({e['probes']} probes, {e['lost_probes']} lost); floor p50 {f['p50_ms']} p99 {f['p99_ms']} ms "
                f"({f['lost_probes']} lost)")
    return {"offered_fixes_per_s": args.rate, "seconds": args.seconds, "officers": args.officers,
            "hotspots": args.hotspots, "warmups": warmups, "runs": runs, "elapsed_s": round(time.time() - t0)}


def med(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(np.median(xs)), 1) if xs else None


def summarise(result: dict) -> dict:
    s = {}
    for cfg in result["throughput"]:
        by = {lab: [r for r in cfg["runs"] if r["label"] == lab] for lab in ("before", "after")}
        m = {lab: {"engine_fixes_per_s": med([r["engine_fixes_per_s"] for r in rs]),
                   "raw_consume_fixes_per_s": med([r["raw_consume_fixes_per_s"] for r in rs]),
                   "engine_over_raw": round(float(np.median([r["engine_over_raw"] for r in rs])), 4),
                   "worker_cpu_s": med([r["worker_cpu_s"] for r in rs]),
                   "worker_peak_rss_mib": med([r["worker_peak_rss_bytes"] / 2**20 for r in rs]),
                   "runs_fixes_per_s": [r["engine_fixes_per_s"] for r in rs]} for lab, rs in by.items()}
        # Pairs of neighbouring runs (one of each, same repetition): their ratio cancels the broker's drift.
        pairs = []
        for rep in sorted({r["repetition"] for r in cfg["runs"]}):
            pr = {r["label"]: r for r in cfg["runs"] if r["repetition"] == rep}
            pairs.append(round(pr["after"]["engine_fixes_per_s"] / pr["before"]["engine_fixes_per_s"], 4))
        ratio = m["after"]["engine_fixes_per_s"] / m["before"]["engine_fixes_per_s"]
        s[cfg["name"]] = {**m, "after_over_before_of_medians": round(ratio, 4),
                          "after_over_before_per_repetition": pairs,
                          "after_over_before_median_of_pairs": round(float(np.median(pairs)), 4),
                          "cpu_s_after_over_before": round(m["after"]["worker_cpu_s"] / m["before"]["worker_cpu_s"], 4),
                          "all_checks_equal": all(r["check"]["equal"] for r in cfg["runs"]),
                          "no_more_than_5pct_slower": ratio >= 0.95}
    if "latency" not in result:
        return s
    lat = result["latency"]
    L = {}
    for lab in ("before", "after"):
        rs = [r for r in lat["runs"] if r["label"] == lab]
        L[lab] = {"engine": {k: med([r["engine"][k] for r in rs]) for k in ("p50_ms", "p99_ms", "max_ms")},
                  "floor": {k: med([r["floor"][k] for r in rs]) for k in ("p50_ms", "p99_ms", "max_ms")},
                  "engine_p99_runs": [r["engine"]["p99_ms"] for r in rs],
                  "floor_p99_runs": [r["floor"]["p99_ms"] for r in rs],
                  "lost_probes": sum(r["engine"]["lost_probes"] for r in rs),
                  "floor_lost_probes": sum(r["floor"]["lost_probes"] for r in rs)}
    L["floor_all_runs"] = {k: med([r["floor"][k] for r in lat["runs"]]) for k in ("p50_ms", "p99_ms", "max_ms")}
    L["p99_after_over_before"] = round(L["after"]["engine"]["p99_ms"] / L["before"]["engine"]["p99_ms"], 4)
    L["p50_after_over_before"] = round(L["after"]["engine"]["p50_ms"] / L["before"]["engine"]["p50_ms"], 4)
    L["after_p99_within_50ms"] = L["after"]["engine"]["p99_ms"] <= 50.0
    s["latency_5000"] = L
    return s


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfgs = result["throughput"]
    fig, axes = plt.subplots(1, len(cfgs) + 1, figsize=(6 * (len(cfgs) + 1), 4.6))
    colours = {"before": "C0", "after": "C1"}
    for ax, cfg in zip(axes, cfgs):
        reps = sorted({r["repetition"] for r in cfg["runs"]})
        for j, lab in enumerate(("before", "after")):
            rs = {r["repetition"]: r for r in cfg["runs"] if r["label"] == lab}
            xs = [rep + (j - 0.5) * 0.38 for rep in reps]
            ax.bar(xs, [rs[rep]["engine_fixes_per_s"] / 1e3 for rep in reps], width=0.36, color=colours[lab],
                   label=f"{lab} ({result['commits'][lab]})")
            ax.plot(xs, [rs[rep]["raw_consume_fixes_per_s"] / 1e3 for rep in reps], "_", ms=18, mew=2, color="k",
                    label="raw aiokafka, just before the run" if j == 0 else None)
            ax.axhline(result["summary"][cfg["name"]][lab]["engine_fixes_per_s"] / 1e3, color=colours[lab], ls="--",
                       lw=1)
        sm = result["summary"][cfg["name"]]
        ax.set_xticks(reps, [f"repetition {r + 1}\n({'AB' if r % 2 == 0 else 'BA'})" for r in reps], fontsize=8)
        ax.set_ylabel("thousand fixes/s (dashed: medians)")
        ax.set_title(f"{cfg['name']}: {cfg['fixes']:,} fixes, {cfg['officers']:,} officers\n"
                     f"after/before of medians {sm['after_over_before_of_medians']:.3f}", loc="left", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    ax = axes[-1]
    lat = result["latency"]
    for j, lab in enumerate(("before", "after")):
        rs = [r for r in lat["runs"] if r["label"] == lab]
        for k, (key, marker) in enumerate((("p50_ms", "o"), ("p99_ms", "s"))):
            x = k * 3 + j
            ax.scatter([x] * len(rs), [r["engine"][key] for r in rs], marker=marker, color=colours[lab], alpha=0.6)
            ax.hlines(np.median([r["engine"][key] for r in rs]), x - 0.3, x + 0.3, color=colours[lab], lw=2.5)
            ax.scatter([x + 0.15] * len(rs), [r["floor"][key] for r in rs], marker=marker, color="grey", alpha=0.5,
                       s=14)
    fl = result["summary"]["latency_5000"]["floor_all_runs"]
    for key, ls in (("p50_ms", ":"), ("p99_ms", "--")):
        ax.axhline(fl[key], color="grey", ls=ls, lw=1, label=f"floor {key[:3]} (median, all runs): {fl[key]} ms")
    ax.axhline(50, color="red", lw=0.8, label="50 ms (p99 acceptance)")
    ax.set_xticks([0, 1, 3, 4], ["p50\nbefore", "p50\nafter", "p99\nbefore", "p99\nafter"])
    ax.set_ylabel("fix to visit.opened, ms (bar: median; grey: the paired floor runs)")
    ax.set_title(f"latency at {lat['offered_fixes_per_s']:,.0f} fixes/s offered, one worker", loc="left", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def git(tree: Path, *a: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *a], capture_output=True, text=True, check=True).stdout.strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, type=Path, help="checkout of the code before (a git worktree)")
    ap.add_argument("--after", required=True, type=Path, help="checkout of the code after")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each checkout per measurement")
    ap.add_argument("--officers", type=int, default=100_000)
    ap.add_argument("--hotspots", type=int, default=1000)
    ap.add_argument("--fixes", type=int, default=1_000_000, help="fixes of the base configuration")
    ap.add_argument("--sustained-factor", type=int, default=5, help="sustained: this many times the base fixes")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=float, default=5000.0, help="offered fixes/s of the latency runs")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per latency run")
    ap.add_argument("--only", default="base,sustained,latency")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false")
    ap.add_argument("--workdir", type=Path, default=HERE / "work" / "ab")
    ap.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json")
    args = ap.parse_args(argv)
    trees = [("before", args.before.resolve()), ("after", args.after.resolve())]
    only = set(args.only.split(","))
    started = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:6.0f} s] {msg}", flush=True)

    result = {"benchmark": "stream before/after (issue 16)", "machine": dict(machine(), nproc=os.cpu_count()),
              "commits": {lab: git(t, "rev-parse", "--short", "HEAD") for lab, t in trees},
              "trees": {lab: str(t) for lab, t in trees},
              "uncommitted_changes_at_start": {lab: git(t, "status", "--porcelain", "--untracked-files=no")
                                               for lab, t in trees},
              "order": "AB, BA, AB, ... per repetition", "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "throughput": []}
    for name, fixes in (("base", args.fixes), ("sustained", args.sustained_factor * args.fixes)):
        if name in only:
            result["throughput"].append(throughput_config(name, fixes, args, trees, args.workdir, log))
    if "latency" in only:
        result["latency"] = latency_block(args, trees, args.workdir, log)
    result["uncommitted_changes_at_end"] = {lab: git(t, "status", "--porcelain", "--untracked-files=no")
                                            for lab, t in trees}
    result["seconds"] = round(time.time() - started)
    if result["throughput"]:
        result["summary"] = summarise(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if "summary" in result:
        if "latency" in result and len(result["throughput"]) == 2:
            draw(result, args.out.with_suffix(".png"))
        print(json.dumps(result["summary"], indent=1))
    log(f"wrote {args.out}")
    ok = all(r["check"]["equal"] for c in result["throughput"] for r in c["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
