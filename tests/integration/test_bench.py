"""``hotspot-dwell bench`` end to end on the session broker, small: it measures, and its check has teeth."""

from __future__ import annotations

from argparse import Namespace

import pytest

from stream.bench import run

pytestmark = pytest.mark.integration


def test_bench_measures_and_checks_against_replay(broker, tmp_path):
    result = run(Namespace(brokers=broker.bootstrap, hotspots=57, officers=300, fixes=6_000, workers=1, partitions=4,
                           rates="500", seconds=2.0, workdir=str(tmp_path), latency_repeat=1))
    t = result["throughput"]
    assert t["fixes"] == 6_004 and t["engine_fixes_per_s"] > 0 and t["raw_consume_fixes_per_s"] > 0
    # On 6,000 fixes the raw read is mostly its first fetches, so the engine can come out ahead of it: the ratio
    # is only checked to be a measurement (the benchmark's loads are 100 times larger).
    assert 0 < t["engine_over_raw"] < 10 and t["worker_cpu_s"] > 0 and t["worker_peak_rss_bytes"][0] > 50 << 20
    check = result["check"]
    assert check["replay_visits"] > 20 and check["equal"] and check["missing"] == check["extra"] == 0
    (lat,) = result["latency"]
    assert lat["probes"] >= 5 and lat["lost_probes"] == 0 and 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    floor = lat["floor"]  # the pass-through forwarder on the given broker, same load
    assert floor["probes"] >= 5 and floor["lost_probes"] == 0 and 0 < floor["p50_ms"] <= floor["p99_ms"]
