"""The crash campaign, short: a simulated day through three workers killed four times and rebalanced.

The full run (a million fixes, a kill every 10-30 s, at least 20 kills) is
``python -m tests.chaos.campaign --fixes 1000000``; this one runs the same code on about 160,000
fixes with a kill every 6-12 s, and needs the same result: nothing lost, extra or different after
de-duplication by event id.
"""

from __future__ import annotations

import json

import pytest

from tests.chaos.campaign import CampaignSettings, run_campaign, summary_lines

# A stuck run gives up after 45 s of still outputs, so that a failure also stays within ~3 minutes.
SHORT = CampaignSettings(fixes=100_000, workers=3, min_kill_s=6.0, max_kill_s=12.0, min_kills=4, seed=5,
                         quiet_s=5.0, give_up_quiet_s=45.0)


@pytest.mark.integration
@pytest.mark.chaos
def test_killed_and_rebalanced_workers_lose_nothing_and_repeat_only_same_id_events(tmp_path):
    report = run_campaign(SHORT, tmp_path / "campaign", tmp_path / "work", say=lambda line: None)
    summary = "\n".join(summary_lines(report))

    assert report["kills"] >= SHORT.min_kills, summary
    assert report["scale_up_s"] is not None and report["scale_down_s"] is not None, summary
    assert report["scale_up_s"] < report["scale_down_s"] < report["flow_end_s"], summary
    assert report["input"]["on_topic"] == report["records"] == report["input"]["produced"], summary
    assert report["settle"]["settled"], summary
    for kind in ("visits", "patrols", "dosage_met", "late_dead_letters"):
        held = report[kind]
        assert held["expected"] > 0 and (held["lost"], held["extra"], held["different"]) == (0, 0, 0), \
            (kind, held["examples"])
    assert sum(report["same_id_different_body"].values()) == 0, report["same_id_different_body_examples"]
    # State came back from stage 1's checkpoints after the kills, not from a re-read of the whole input.
    assert report["restored_partitions"] > 0, summary
    assert json.loads((tmp_path / "campaign.json").read_text())["kills"] == report["kills"]
    assert (tmp_path / "campaign.png").stat().st_size > 10_000
    days = report["hotspot_days"]
    assert days["expected"] > 0 and (days["lost"], days["extra"], days["different"]) == (0, 0, 0), days["examples"]
    assert report["passed"] and report["differences"] == 0, summary
