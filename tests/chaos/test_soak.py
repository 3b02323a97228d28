"""The soak, short: a minute at 1,000 fixes/s with 20-second policing days, on real processes.

The full run (30 minutes at 3,000 fixes/s) is ``python -m tests.chaos.soak``;
this one checks that the same code samples every 10 s, sees days close, keeps
the lag bounded and writes its JSON and PNG.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from tests.chaos.soak import SoakSettings, run_soak, window_quantile

SHORT = SoakSettings(minutes=1.0, rate=1_000.0, day_s=20.0, sample_s=10.0, seed=11)


@pytest.mark.integration
@pytest.mark.chaos
def test_short_soak_samples_every_10s_closes_days_and_keeps_lag_bounded(tmp_path):
    result = run_soak(SHORT, tmp_path / "soak", tmp_path / "work", progress=lambda line: None)

    offer = [s for s in result["samples"] if s["phase"] == "offer"]
    gaps = np.diff([s["t_s"] for s in offer])
    assert len(offer) == 7 and np.all((gaps > 9.0) & (gaps < 11.0)), gaps
    assert all(s["worker_rss_bytes"] > 100 << 20 and s["broker_rss_bytes"] > 0 for s in result["samples"])
    assert all(s["latency_p99_s"] is not None and s["latency_p50_s"] <= s["latency_p99_s"] for s in offer[1:])
    assert result["samples"][-1]["officers"] == SHORT.officers and result["samples"][-1]["state_bytes"] > 0

    # Three days' input began after the first day's, so at least two days were due to close; each closed with
    # a row for every hot spot, and only after the next day's input had begun.
    days, summary = result["days"], result["summary"]
    assert summary["days_close_due"] >= 2 and summary["days_closed"] == summary["days_close_due"]
    for day, following in itertools.pairwise(days):
        assert day["rows"] == day["hotspots"] == 57
        assert following["input_from_s"] <= day["closed_at_s"] < following["input_from_s"] + 10.0

    assert summary["lag_bounded"] and summary["lag_max_fixes"] <= SHORT.lag_bound_fixes
    assert summary["drained_s"] is not None and result["samples"][-1]["lag_fixes"] == 0
    assert 950 <= summary["achieved_rate"] <= 1_050
    assert summary["verdict"]

    written = json.loads((tmp_path / "soak.json").read_text())
    assert written["summary"] == json.loads(json.dumps(summary)) and len(written["samples"]) == len(result["samples"])
    png = (tmp_path / "soak.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_window_quantile_interpolates_within_the_buckets_of_the_increase():
    before = {0.01: 5.0, 0.05: 5.0, 0.1: 5.0, math.inf: 5.0}
    now = {0.01: 15.0, 0.05: 95.0, 0.1: 105.0, math.inf: 105.0}  # +10, +80, +10 in the window
    assert window_quantile(0.5, now, before) == pytest.approx(0.01 + 0.04 * (50 - 10) / 80)
    assert window_quantile(0.99, now, before) == pytest.approx(0.05 + 0.05 * (99 - 90) / 10)
    above = {0.01: 5.0, 0.05: 5.0, 0.1: 5.0, math.inf: 25.0}  # all beyond the last finite bound
    assert window_quantile(0.5, above, before) == 0.1
    assert window_quantile(0.5, before, before) is None  # nothing observed in the window


def test_marks_are_10_minutes_for_the_full_run_and_scale_for_short_ones():
    assert SoakSettings(minutes=30).marks() == (600.0, 1200.0)
    assert SoakSettings(minutes=1).marks() == (20.0, 30.0)
