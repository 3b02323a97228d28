"""Selection logic of the accuracy grid (benchmarks/accuracy_grid.py) on hand-made counts; no simulation."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from stream.engine import RuleSettings
from benchmarks.accuracy_grid import CELLS, COUNT_FIELDS, FIXED_SETTINGS, best_under, compare_cell, recall_and_false

N_TRUE = 1000  # long true visits: 1 visit = 0.1 point


def counts(recovered: int, reported: int, false: int, n_true: int = N_TRUE) -> np.ndarray:
    row = dict.fromkeys(COUNT_FIELDS, 0) | {"n_true_long": n_true, "n_recovered": recovered,
                                             "n_reported_patrols": reported, "n_false": false}
    return np.array([row[f] for f in COUNT_FIELDS], np.int64)


# (margin, grace, gap) -> (recovered, reported, false); listed out of order so that ties cannot fall to
# the list order by luck.
FIXED = {
    (10.0, 0.0, 90.0): (930, 1000, 0),  # ties (5, 0, 90) on recall, larger margin
    (0.0, 30.0, 90.0): (950, 1000, 30),  # the best recall, but 3% false
    (5.0, 0.0, 90.0): (930, 1000, 20),  # exactly at the 2% cap: allowed
    (0.0, 0.0, 90.0): (900, 1000, 10),
    (0.0, 60.0, 90.0): (940, 1000, 21),  # just over the cap
}
SETTINGS = list(FIXED)
FIXED_COUNTS = np.array([counts(*v) for v in FIXED.values()])


def setting_of(record_entry: dict) -> tuple:
    s = record_entry["setting"]
    return s["exit_margin_m"], s["exit_grace_s"], s["max_gap_s"]


def test_best_under_the_cap_excludes_settings_over_it_and_breaks_ties_by_margin():
    i = best_under(FIXED_COUNTS, SETTINGS, 0.02)
    assert SETTINGS[i] == (5.0, 0.0, 90.0)
    assert SETTINGS[best_under(FIXED_COUNTS, SETTINGS, np.inf)] == (0.0, 30.0, 90.0)
    assert SETTINGS[best_under(FIXED_COUNTS, SETTINGS, 0.0)] == (10.0, 0.0, 90.0)
    assert best_under(FIXED_COUNTS[[1, 4]], [SETTINGS[1], SETTINGS[4]], 0.02) is None


def test_ties_go_to_smaller_grace_then_smaller_gap():
    settings = [(0.0, 60.0, 120.0), (0.0, 60.0, 90.0), (0.0, 30.0, 600.0), (5.0, 0.0, 90.0)]
    rows = np.array([counts(800, 100, 1)] * 4)
    assert settings[best_under(rows, settings, 0.02)] == (0.0, 30.0, 600.0)
    assert settings[best_under(rows[:2], settings[:2], 0.02)] == (0.0, 60.0, 90.0)


def test_compare_cell_shortfall_within_one_point_and_pareto():
    # Adaptive 92.0% with 3% false: 1.0 pt under the capped best (93.0%, within one point), but 3.0 pt under
    # the best fixed setting that is allowed as many false patrols (95.0% at 3%).
    rec = compare_cell(FIXED_COUNTS, SETTINGS, counts(920, 1000, 30), min_recall=0.90)
    assert rec["n_true_long"] == N_TRUE
    assert setting_of(rec["best_fixed"]) == (5.0, 0.0, 90.0) and rec["best_fixed"]["cap_met"]
    assert rec["best_fixed"]["recall"] == pytest.approx(0.93)
    assert rec["shortfall_pt"] == pytest.approx(1.0)
    assert rec["within_one_point"] is True
    assert rec["pareto"]["false_cap"] == pytest.approx(0.03)
    assert setting_of(rec["pareto"]) == (0.0, 30.0, 90.0)
    assert rec["pareto"]["shortfall_pt"] == pytest.approx(3.0)
    assert setting_of(rec["best_fixed_uncapped"]) == (0.0, 30.0, 90.0)
    # Recall reaches the target, false patrols do not stay under the cap: not met.
    assert rec["target"] == {"min_recall": 0.90, "max_false_share": 0.02, "recall_met": True, "false_met": False,
                             "met": False}

    one_more_miss = compare_cell(FIXED_COUNTS, SETTINGS, counts(919, 1000, 30))
    assert one_more_miss["within_one_point"] is False
    assert one_more_miss["shortfall_pt"] == pytest.approx(1.1)
    assert "target" not in one_more_miss


def test_pareto_is_the_capped_best_when_adaptive_is_under_the_cap():
    rec = compare_cell(FIXED_COUNTS, SETTINGS, counts(940, 1000, 5), min_recall=0.935)
    assert rec["pareto"]["false_cap"] == 0.02
    assert setting_of(rec["pareto"]) == setting_of(rec["best_fixed"]) == (5.0, 0.0, 90.0)
    assert rec["shortfall_pt"] == pytest.approx(-1.0) == rec["pareto"]["shortfall_pt"]
    assert rec["within_one_point"] is True and rec["target"]["met"] is True


def test_no_setting_under_the_cap_falls_back_to_the_lowest_false_share():
    settings = [(0.0, 0.0, 90.0), (5.0, 0.0, 90.0), (10.0, 0.0, 90.0)]
    rows = np.array([counts(700, 100, 5), counts(650, 100, 3), counts(600, 100, 3)])
    rec = compare_cell(rows, settings, counts(640, 100, 4))
    assert rec["best_fixed"]["cap_met"] is False
    assert setting_of(rec["best_fixed"]) == (5.0, 0.0, 90.0)
    assert rec["shortfall_pt"] == pytest.approx(1.0)
    # Pareto cap is the adaptive's own 4%: the 3% settings qualify, the 5% one does not.
    assert setting_of(rec["pareto"]) == (5.0, 0.0, 90.0)


def test_recall_and_false_of_empty_rows():
    recall, false = recall_and_false(np.array([counts(0, 0, 0, n_true=0), counts(3, 4, 1, n_true=4)]))
    assert math.isnan(recall[0]) and false[0] == 0.0
    assert recall[1] == 0.75 and false[1] == 0.25


def test_cells_are_the_study_cells():
    assert len(CELLS) == 17 and len(FIXED_SETTINGS) == 6 * 9 * 6
    assert [(p["name"], p["interval_s"], p["error_m"], p["seed_offset"], p["prefix"]) for p in CELLS["mixed"]] == [
        ("radio", 60.0, 30.0, 0, "radio"), ("app", 10.0, 5.0, 2000, "app")]
    assert CELLS["120s_50m"] == [{"name": "all", "interval_s": 120.0, "error_m": 50.0, "officers": None,
                                  "seed_offset": 0, "prefix": None}]


def test_the_published_grid_is_for_the_current_defaults():
    # The README quotes benchmarks/results/accuracy-grid.json: a change of the adaptive defaults must come
    # with a new run of the grid.
    result = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/accuracy-grid.json").read_text())
    assert result["defaults"] == json.loads(json.dumps(dataclasses.asdict(RuleSettings())))
    assert set(result["records"]) == set(CELLS)
