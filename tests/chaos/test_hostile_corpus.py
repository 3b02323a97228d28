"""The hostile corpus through stage 1 without a broker: every planted record is rejected with a reason
its category allows, the good fixes are judged as in a clean run, and nothing raises (hypothesis drives
the seeds and arbitrary bytes)."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geo
from geo.hotspots import load_hotspots
from kernels.reasons import REASON_NAMES
from stream.batches import build_batch
from stream.engine import RuleSettings, Visits
from stream.fixes import MAX_ID_CHARS
from stream.stage1 import OfficerTracker
from tests.chaos.hostile import CATEGORY_REASONS, good_day, mix_hostile

HOTSPOTS = load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)
NOW_MS = int(time.time() * 1000)
# The worker's default bounds: a week back, five minutes ahead.
BOUNDS = dict(time_min_ms=NOW_MS - 7 * 86_400_000, time_max_ms=NOW_MS + 300_000)
DAY = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).date()


def through_stage1(values: list[bytes], chunk: int = 700):
    """Visits (officer, hot spot, start, end, fixes) and each record's reason ('' if used)."""
    tracker = OfficerTracker(HOTSPOTS, RuleSettings(), partition=0)
    reasons = [""] * len(values)
    closed = []
    for lo in range(0, len(values), chunk):
        batch, bad, why = build_batch(0, list(range(lo, min(lo + chunk, len(values)))), values[lo:lo + chunk],
                                      **BOUNDS)
        for i, code in zip(bad.tolist(), why.tolist()):
            reasons[lo + i] = REASON_NAMES[code]
        if len(batch):
            out = tracker.step(batch)
            closed.append(out.visits)
            for row, code in zip(out.rejects.row.tolist(), out.rejects.reason.tolist()):
                reasons[row] = REASON_NAMES[code]
    last = tracker.engine.finish()
    closed.append(last.visits)
    for row, code in zip(last.rejects.row.tolist(), last.rejects.reason.tolist()):
        reasons[row] = REASON_NAMES[code]
    v = Visits.concat(closed)
    visits = sorted((tracker.registry.id_of(int(o)), HOTSPOTS.ids[int(h)], int(s), int(e), int(n))
                    for o, h, s, e, n in zip(*v[:5]))
    return visits, reasons


@pytest.fixture(scope="module")
def good():
    return good_day(HOTSPOTS, DAY, officers=8, seed=5)


@pytest.fixture(scope="module")
def clean(good):
    return through_stage1([v for _, v in good])


def speed_rejected_officers(good, reasons) -> set[str]:
    return {k.decode() for (k, _), r in zip(good, reasons) if r == "impossible_speed"}


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31))
def test_every_planted_record_is_rejected_for_its_kind_and_the_good_output_is_the_clean_runs(good, clean, seed):
    clean_visits, clean_reasons = clean
    assert clean_visits
    records, kinds = mix_hostile(good, 1_500, seed, NOW_MS, speed_rejected_officers(good, clean_reasons))
    assert sum(k is not None for k in kinds) == 1_500
    assert {k for k in kinds if k} == set(CATEGORY_REASONS)  # every category planted
    visits, reasons = through_stage1([v for _, v in records])
    assert visits == clean_visits
    wrong = [(k, r, records[i][1][:120]) for i, (k, r) in enumerate(zip(kinds, reasons))
             if k is not None and r not in CATEGORY_REASONS[k]]
    assert not wrong, wrong[:10]
    assert [r for k, r in zip(kinds, reasons) if k is None] == clean_reasons


_json_ish = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                             st.sampled_from(["officer_id", "ts", "lat", "lon", "accuracy_m", "x"]), inner,
                             max_size=6), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.binary(max_size=300) | _json_ish.map(lambda v: repr(v).replace("'", '"').encode()),
                       min_size=1, max_size=40))
def test_any_bytes_are_judged_without_raising_and_what_is_kept_is_a_valid_fix(values):
    batch, bad, reason = build_batch(3, list(range(len(values))), values, **BOUNDS)
    kept = set(batch.offset.tolist())
    assert kept.isdisjoint(bad.tolist()) and kept | set(bad.tolist()) == set(range(len(values)))
    assert all(REASON_NAMES.get(int(r)) for r in reason)
    assert np.all(np.abs(batch.lat) <= 90) and np.all(np.abs(batch.lon) <= 180)
    assert np.all((batch.ts_ms >= BOUNDS["time_min_ms"]) & (batch.ts_ms <= BOUNDS["time_max_ms"]))
    ids = [batch.officer_id_bytes(i) for i in range(len(batch))]
    assert all(0 < len(i.decode()) <= MAX_ID_CHARS for i in ids)
