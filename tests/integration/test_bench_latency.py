"""The latency bench end to end on small loads: every probe comes back, on fresh brokers, with the floor beside."""

import numpy as np
import pytest

from stream.bench import make_load
from stream.bench_latency import latency

pytestmark = pytest.mark.integration


def test_every_probe_is_timed_to_its_visit_opened_and_through_the_floor(tmp_path):
    load = make_load(tmp_path, 57, 1_000, 20_000, 2)
    [result] = latency(None, load, [1_000.0], 2.0, 2, tmp_path, "t.", gateway_batch_ms=50, repeats=2)
    assert result["repeats"] == 2 and len(result["runs"]) == 2
    assert result["warm_fixes"] == load.officers  # every officer's first fix went in before the clock started
    for run in result["runs"]:
        for side in ("engine", "floor"):
            r = run[side]
            # About 200 probes a second for 2 s after the warm-up, none lost, each second reported.
            assert r["lost_probes"] == 0 and 300 <= r["probes"] <= 500
            assert [s for s, *_ in r["by_second"]] == [0, 1]
            assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
            # The gateway keeps to the offered rate, batch by batch.
            assert 900 <= r["achieved_offer_per_s"] <= 1_100
    # The reported figures are the medians over the runs, for the engine and the floor alike.
    for key in ("p50_ms", "p99_ms", "max_ms"):
        assert result[key] == round(float(np.median([run["engine"][key] for run in result["runs"]])), 1)
        assert result["floor"][key] == round(float(np.median([run["floor"][key] for run in result["runs"]])), 1)
    assert result["probes"] == sum(run["engine"]["probes"] for run in result["runs"])
