"""``hotspot-dwell`` command line: replay, schedule, hot spots, simulate, demo."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from stream.engine import SCALINGS, RuleSettings

RULE_FLAGS = {
    "max_gap_s": "seconds between two fixes after which an open visit ends at its last inside fix",
    "exit_margin_m": "metres the polygon is grown by for leaving (enter on the polygon, leave on the buffer)",
    "exit_grace_s": "seconds outside the buffer that do not yet end a visit",
    "min_patrol_s": "seconds of visit that make a patrol",
    "max_speed_mps": "speed since the last accepted fix above which a fix is rejected",
    "reorder_window_s": "seconds within which out-of-order fixes are put back in order",
    "max_gap_intervals": "adaptive rules: the gap limit is at least this many of the officer's reporting intervals",
    "exit_grace_intervals": "adaptive rules: the exit grace is this many of the officer's intervals",
    "max_exit_grace_s": "adaptive rules: the longest exit grace the interval can give, seconds",
    "exit_margin_accuracies": "adaptive rules: a fix's exit margin is this many times its stated accuracy",
    "default_accuracy_m": "adaptive rules: the accuracy of a fix that states none, metres",
    "max_exit_margin_m": "adaptive rules: the largest exit margin a stated accuracy can give, metres",
    "stay_min_fixes": "adaptive rules: this many fixes in a row about one place are judged at their centroid "
                      "(0: off)",
    "stay_radius_accuracies": "adaptive rules: a stay's fixes lie within this many times their stated accuracy "
                              "of its centroid",
    "stay_max_misses": "adaptive rules: stray fixes in a row a stay forgives",
    "walking_speed_mps": "adaptive rules: stays are looked for only where a walker would leave a stay's radius "
                         "between two reports",
}


SECURITY_FLAGS = {
    "security_protocol": "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL",
    "ssl_cafile": "CA certificates (PEM) that signed the brokers' certificates (default: the system's)",
    "ssl_certfile": "client certificate (PEM), for brokers that require one",
    "ssl_keyfile": "its private key (PEM; a passphrase from HOTSPOT_DWELL_SSL_KEY_PASSWORD)",
    "sasl_mechanism": "SCRAM-SHA-512 (default), SCRAM-SHA-256 or PLAIN (PLAIN only with SASL_SSL)",
    "sasl_username": "SASL user name",
    "sasl_password_file": "file whose first line is the SASL password",
    "pseudonym_key_file": "secret key file (>= 32 bytes): officer ids in the outputs become keyed hashes",
}


def _add_rule_flags(p: argparse.ArgumentParser) -> None:
    defaults = RuleSettings()
    g = p.add_argument_group("rules")
    for name, help_text in RULE_FLAGS.items():
        g.add_argument("--" + name.replace("_", "-"), type=type(getattr(defaults, name)), default=getattr(defaults, name),
                       help=f"{help_text} (default %(default)s)")
    g.add_argument("--visit-bounds", choices=("midpoint", "fixes"), default=defaults.visit_bounds,
                   help="where a visit starts and ends: midway to the fixes before and after it (the unbiased "
                        "estimate), or at its first and last inside fix (default %(default)s)")
    g.add_argument("--rules", dest="scaling", choices=SCALINGS, default=defaults.scaling,
                   help="adaptive: each officer's gap limit and exit grace grow with his own reporting interval, "
                        "never below --max-gap-s and --exit-grace-s; fixed: those values for every radio "
                        "(default %(default)s)")
    g.add_argument("--day-start", default=defaults.day_start, help="local start of the policing day (default %(default)s)")
    g.add_argument("--timezone", default=defaults.timezone, help="IANA time zone of the force (default %(default)s)")


def _rules(args: argparse.Namespace) -> RuleSettings:
    return RuleSettings(**{k: getattr(args, k) for k in list(RULE_FLAGS) + ["visit_bounds", "scaling", "day_start",
                                                                              "timezone"]})


def _print_compliance(compliance, out=None) -> None:
    out = out or sys.stdout  # looked up per call, so redirection and capture work
    rows = compliance.rows()
    header = ("policing_day", "group", "scheduled", "met", "compliance", "unscheduled_patrolled")
    widths = [max(len(h), *(len(_cell(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)), file=out)
    for r in rows:
        print("  ".join(_cell(v).ljust(w) for v, w in zip(r, widths)), file=out)


def _cell(v) -> str:
    if isinstance(v, float):
        return "-" if v != v else f"{v:.0%}"
    return str(v)


def cmd_replay(args: argparse.Namespace) -> int:
    from stream.replay import replay, write_outputs

    from stream.readers import ReadOptions

    try:
        bounds = ReadOptions(time_min_ms=_utc_ms(args.time_min), time_max_ms=_utc_ms(args.time_max))
    except ValueError as exc:
        raise SystemExit(f"hotspot-dwell: error: {exc}") from None
    result = replay(args.fixes, _load_hotspots(args.hotspots, args.crs), args.schedule, _rules(args),
                    read_options=bounds, progress=not args.quiet)
    written = write_outputs(result, args.out, charts=not args.no_charts)
    s = result.stats
    print(f"{s.fixes_read:,} fixes read, {s.fixes_rejected:,} rejected, {len(result.visits):,} visits, "
          f"{len(result.patrols):,} patrols in {s.seconds:.2f} s ({s.fixes_per_s:,.0f} fixes/s, "
          f"peak memory {s.peak_rss_bytes / 2**20:,.0f} MiB)")
    if len(result.compliance):
        _print_compliance(result.compliance)
    for p in written:
        print(f"wrote {p}")
    return 0


def _utc_ms(text: str) -> int:
    """``YYYY-MM-DD`` (UTC midnight) or RFC 3339 to epoch ms."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return int(value.timestamp() * 1000)


def _load_hotspots(path, crs):
    from geo.hotspots import load_hotspots

    return load_hotspots(path, crs=crs)


def cmd_schedule(args: argparse.Namespace) -> int:
    from stream.schedule import draw_schedule

    hs = _load_hotspots(args.hotspots, "EPSG:27700")
    start, end = (args.window.split("-") + [""])[:2]
    if not end:
        raise SystemExit(f"--window must look like 14:00-00:00, got {args.window!r}")
    sched = draw_schedule(hs.ids, first_day=dt.date.fromisoformat(args.start), days=args.days, share=args.share,
                          seed=args.seed, groups=hs.groups if args.per_group else None, window_start=start,
                          window_end=end,
                          target_minutes=args.target_minutes if args.target_minutes else hs.target_minutes)
    sched.write_csv(args.out)
    print(f"wrote {len(sched)} scheduled hot spot-days over {args.days} days to {args.out}")
    return 0


def cmd_hotspots_build(args: argparse.Namespace) -> int:
    from geo.crime_cells import build_crime_hotspots, write_geojson

    fc = build_crime_hotspots(args.crimes, cell_m=args.cell_m, top=args.top, groups_path=args.wards,
                              id_prefix=args.prefix)
    write_geojson(fc, args.out)
    print(f"wrote {len(fc['features'])} hot spots to {args.out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from stream.schedule import load_schedule
    from stream.simulate import SimulationSettings, simulate_day, write_fixes_csv, write_fixes_jsonl

    hs = _load_hotspots(args.hotspots, "EPSG:27700")
    sched = load_schedule(args.schedule, hs.ids) if args.schedule else None
    sim = simulate_day(hs, sched, dt.date.fromisoformat(args.day),
                       SimulationSettings(officers=args.officers, seed=args.seed))
    if args.out:
        (write_fixes_jsonl if args.out.endswith((".jsonl", ".ndjson")) else write_fixes_csv)(sim, args.out)
        print(f"wrote {len(sim):,} fixes of {args.officers} officers to {args.out}")
    if args.truth:
        _write_truth(sim, hs, args.truth)
        print(f"wrote the true visits (noise-free path) to {args.truth}")
    if args.brokers:
        import asyncio

        from stream.producer import produce, records_of

        topic = args.topic_prefix + "location-fixes"
        n = asyncio.run(produce(args.brokers, topic, records_of(sim.officer_id, sim.ts_ms, sim.lat, sim.lon,
                                                                 sim.accuracy_m), rate=args.rate))
        print(f"produced {n:,} fixes to {topic} on {args.brokers}"
              + (f" at {args.rate:,.0f} fixes/s" if args.rate else " as fast as possible"))
    if not (args.out or args.brokers):
        raise SystemExit("hotspot-dwell: error: give --out and/or --brokers")
    return 0


def _write_truth(sim, hs, path) -> None:
    from stream.accuracy import true_visits
    from stream.fixes import OfficerRegistry
    from stream.tables import visits_table

    registry = OfficerRegistry()
    visits_table(true_visits(sim, hs, registry), registry, hs, rule_columns=False).write_csv(path)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.replay:
        from stream.demo import run_replay_demo

        return run_replay_demo(Path(args.out), officers=args.officers, seed=args.seed)
    from stream.live_demo import run_stream_demo

    return run_stream_demo(Path(args.out), officers=args.officers, seed=args.seed, seconds=args.seconds)


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from stream.bench import run

    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if result["check"]["equal"] else 1


def cmd_worker(args: argparse.Namespace) -> int:
    from stream.settings import WorkerSettings, load_settings
    from stream.worker import run_worker

    cli = {k: getattr(args, k) for k in ("brokers", "hotspots", "schedule", "crs", "metrics_port", "app_id",
                                          "topic_prefix", "partitions", "state_dir", "idle_advance_s",
                                          "day_close_grace_s", *SECURITY_FLAGS)}
    cli.update({k: getattr(args, k) for k in list(RULE_FLAGS) + ["visit_bounds", "scaling", "day_start", "timezone"]})
    cli = {k: v for k, v in cli.items() if v is not None}
    if args.no_time_check:
        cli.update(max_future_s=None, max_age_s=None)
    try:
        settings = load_settings(cli, config=args.config)
    except ValueError as exc:
        raise SystemExit(f"hotspot-dwell: error: {exc}") from None
    if not settings.hotspots:
        raise SystemExit("hotspot-dwell: error: --hotspots is required (or HOTSPOT_DWELL_HOTSPOTS)")
    # Set by a flag, the environment or the file (a file or variable that repeats the default goes unnoticed).
    partitions_given = args.partitions is not None or settings.partitions != WorkerSettings().partitions
    return run_worker(settings, loglevel=args.loglevel, partitions_given=partitions_given)


def cmd_broker(args: argparse.Namespace) -> int:
    from stream.broker import run_broker_forever

    return run_broker_forever(args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotspot-dwell", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="replay fix exports against hot spots and a schedule")
    p.add_argument("--fixes", action="append", required=True, help="CSV or JSON Lines file (repeatable)")
    p.add_argument("--hotspots", required=True, help="GeoJSON hot spots")
    p.add_argument("--schedule", help="schedule CSV")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--crs", default="EPSG:27700", help="metric CRS (default %(default)s)")
    p.add_argument("--time-min", default="2000-01-01",
                   help="fixes before this (date or RFC 3339) are time_out_of_range (default %(default)s)")
    p.add_argument("--time-max", default="2100-01-01",
                   help="fixes at or after this are time_out_of_range (default %(default)s)")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_rule_flags(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("schedule", help="draw a randomised patrol schedule")
    p.add_argument("--hotspots", required=True)
    p.add_argument("--start", required=True, help="first policing day, YYYY-MM-DD")
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--share", type=float, default=0.5, help="share of hot spots scheduled per day")
    p.add_argument("--per-group", action="store_true", help="draw the share within each district")
    p.add_argument("--window", default="14:00-00:00", help="patrol window, local HH:MM-HH:MM")
    p.add_argument("--target-minutes", type=float,
                   help="minutes of presence needed in the window (default: each hot spot's own target_minutes)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("hotspots", help="hot spot files")
    hsub = p.add_subparsers(dest="hotspots_command", required=True)
    b = hsub.add_parser("build", help="top-N grid cells by crime count, as GeoJSON")
    b.add_argument("--crimes", action="append", required=True, help="data.police.uk street-level CSV (repeatable)")
    b.add_argument("--cell-m", type=float, default=150.0)
    b.add_argument("--top", type=int, default=57)
    b.add_argument("--wards", help="GeoPackage or GeoJSON of districts, to set each hot spot's group")
    b.add_argument("--prefix", default="HS", help="id prefix (default %(default)s)")
    b.add_argument("--out", required=True)
    b.set_defaults(func=cmd_hotspots_build)

    p = sub.add_parser("simulate", help="simulate a policing day of officer fixes")
    p.add_argument("--hotspots", required=True)
    p.add_argument("--schedule")
    p.add_argument("--day", required=True, help="policing day, YYYY-MM-DD")
    p.add_argument("--officers", type=int, default=12)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", help="file of fixes: .csv, or .jsonl for JSON Lines")
    p.add_argument("--truth", help="CSV of the true visits (the noise-free path), beside the fixes")
    p.add_argument("--brokers", help="produce the fixes to Kafka (location-fixes) instead of / as well as a file")
    p.add_argument("--topic-prefix", default="")
    p.add_argument("--rate", type=float, help="fixes per second to produce (default: as fast as possible)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("worker", help="run a streaming worker against Kafka")
    p.add_argument("--brokers", help="bootstrap servers host:port[,host:port]")
    p.add_argument("--hotspots", help="GeoJSON hot spots")
    p.add_argument("--schedule", help="schedule CSV")
    p.add_argument("--crs", help="metric CRS (default EPSG:27700)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument("--app-id", help="consumer group / app id (default hotspot-dwell)")
    p.add_argument("--topic-prefix", help="prefix of every topic name")
    p.add_argument("--partitions", type=int, help="partitions of location-fixes if the worker creates it (an "
                   "existing one's count wins; the worker's other topics get the same)")
    p.add_argument("--state-dir", help="directory for the worker's local files (its state is kept in Kafka)")
    p.add_argument("--config", help="TOML file of settings")
    p.add_argument("--no-time-check", action="store_true",
                   help="accept any event time (simulated days run in compressed time)")
    p.add_argument("--idle-advance-s", type=float,
                   help="a partition quiet this long (wall clock) moves its event time on with the wall clock, "
                   "so silent officers' visits and policing days close on it too (default 30)")
    p.add_argument("--day-close-grace-s", type=float,
                   help="a policing day closes when the partition's event time passes its end by this much "
                   "(default 900)")
    p.add_argument("--loglevel", default="warning")
    g = p.add_argument_group("security (the password only from HOTSPOT_DWELL_SASL_PASSWORD, --config or a file)")
    for name, help_text in SECURITY_FLAGS.items():
        g.add_argument("--" + name.replace("_", "-"), help=help_text)
    g = p.add_argument_group("rules")
    for name in RULE_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), type=type(getattr(RuleSettings(), name)))
    g.add_argument("--visit-bounds", choices=("midpoint", "fixes"))
    g.add_argument("--rules", dest="scaling", choices=SCALINGS)
    g.add_argument("--day-start")
    g.add_argument("--timezone")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("bench", help="benchmark the engine against the raw Kafka consumer, with latency")
    p.add_argument("--brokers", help="an existing cluster (default: start the embedded broker)")
    p.add_argument("--hotspots", type=int, default=1000, help="57 (Nottingham) or a number of random 120-220 m cells")
    p.add_argument("--officers", type=int, default=100_000)
    p.add_argument("--fixes", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--rates", default="1000,5000,20000,50000", help="offered fixes/s for the latency runs")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per offered rate")
    p.add_argument("--gateway-batch-ms", type=int,
                   help="the latency load comes as from a fix gateway that writes a batch per partition every "
                   "this many ms (default: stream.bench_latency.GATEWAY_BATCH_MS)")
    p.add_argument("--latency-repeat", type=int, help="latency runs per offered rate, engine and floor "
                   "alternating (default: stream.bench_latency.LATENCY_REPEATS); medians are reported")
    p.add_argument("--repeat", type=int, default=3, help="throughput runs (fresh workers each); the median is "
                   "reported, as the machine is shared and noisy")
    p.add_argument("--workdir", help="where logs and generated files go (default: a temporary directory)")
    p.add_argument("--out", help="write the result JSON here as well")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (Tansu) on 127.0.0.1")
    p.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("demo", help="stream a simulated policing day over the Nottingham hot spots, live")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--officers", type=int, default=8)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--seconds", type=float, default=30.0, help="wall-clock seconds for the simulated day")
    p.add_argument("--replay", action="store_true", help="replay the day from a file instead (no broker)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from geo.hotspots import HotspotFileError
    from stream.readers import FixFileError
    from stream.schedule import ScheduleFileError

    try:
        return args.func(args)
    except (HotspotFileError, ScheduleFileError, FixFileError) as exc:
        print(f"hotspot-dwell: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
