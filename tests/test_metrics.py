"""The metrics of a worker on an injected registry, the control-room board, and promtool's lint."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
import time
import uuid

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import geo
from stream.board import TodayBoard
from stream.dwell_runtime import Stage1Stats
from stream.stage1_consumer import IngestStats
from stream.metrics import DwellMetrics
from stream.policing_day import PolicingCalendar
from stream.schedule import Schedule, ScheduleEntry
from stream.presence_runtime import Stage2Stats
from stream.stage2 import PartitionPresence, PresenceModel
from stream.visit_batches import VisitBatch

DAY = dt.date(2024, 3, 4)
CAL = PolicingCalendar("Europe/London", "06:00")


def _vid(k: int) -> str:
    """A visit id (uuid text) for test item k."""
    return str(uuid.UUID(int=k + 1))


def require_promtool() -> str:
    """promtool's path; a skip locally, a failure under .ci/run (which installs it)."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("HOTSPOT_DWELL_CI"):
            pytest.fail("promtool is missing but .ci/run should have installed Debian's prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


@pytest.fixture(scope="module")
def hotspots():
    return geo.load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)


@pytest.fixture
def model(hotspots):
    entries = [ScheduleEntry(DAY, h, dt.time(14), dt.time(23, 59), 15.0) for h in hotspots.ids[:3]]
    return PresenceModel(hotspots, Schedule(entries), CAL, 900.0)


def ms(hour: int, minute: int = 0) -> int:
    return int(dt.datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=dt.timezone.utc).timestamp() * 1000)


def samples(registry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class FakeIngest:
    def __init__(self):
        self.stats = IngestStats(records=10, batches=2, dead_letters=3,
                                 dead_letter_reasons={"malformed": 2, "bad_time": 1})


class FakeTracker:
    def __init__(self, officers, state_bytes):
        self.registry = [None] * officers
        self._bytes = state_bytes

    def state_bytes(self):
        return self._bytes


class FakePresence:
    stats = Stage2Stats(batches=40, checkpoints=3, late_visits=2, gaps=1, unreadable=0)


def test_stage2_counters_are_exported(hotspots):
    registry = CollectorRegistry()
    DwellMetrics(registry, hotspots, presence=FakePresence())
    value = registry.get_sample_value
    assert value("hotspot_dwell_stage2_batches_total") == 40
    assert value("hotspot_dwell_stage2_checkpoints_total") == 3
    assert value("hotspot_dwell_stage2_late_visits_total") == 2
    assert value("hotspot_dwell_stage2_gaps_total") == 1
    assert value("hotspot_dwell_stage2_unreadable_total") == 0


class FakeRuntime:
    def __init__(self):
        self.trackers = {0: FakeTracker(3, 1000), 2: FakeTracker(2, 500)}
        self.stats = Stage1Stats(batches=2, fixes=7, visits=4, patrols=1, rejected={"late": 1, "duplicate": 2},
                                 silence_closed=3, idle_advances=5)


def board_with_visits(model, hotspots, owned):
    board = TodayBoard(model, wall_clock_days=False)
    h0, h1 = hotspots.ids[0], hotspots.ids[1]
    state = PartitionPresence(model, 0, list(hotspots.ids), 1)
    applied = state.apply(VisitBatch(0, [["v", _vid(1), h0, ms(14), ms(14, 20)], ["v", _vid(2), h1, ms(15), ms(15, 5)],
                                            ["v", _vid(3), h0, ms(14, 10), ms(14, 30)]]))
    assert len(applied.visits) == 3
    for day in applied.days_seen:
        board.saw_day(day)
    board.refresh(owned, lambda day: state.rows(day, owned), ms(16))
    return board


def test_board_rows_for_owned_hotspots(model, hotspots):
    owned = list(hotspots.ids[:5])
    snap = board_with_visits(model, hotspots, owned).snapshot
    assert snap.day == DAY and sorted(snap.hotspot_id.tolist()) == sorted(owned)
    i0 = snap.hotspot_id.tolist().index(hotspots.ids[0])
    # Two overlapping visits 14:00-14:20 and 14:10-14:30: 30 min of presence, 40 officer-minutes.
    assert snap.presence_s[i0] == 1800 and snap.officer_s[i0] == 2400
    assert snap.patrols[i0] == 2 and snap.visits[i0] == 2 and snap.met[i0] and snap.scheduled[i0]
    i1 = snap.hotspot_id.tolist().index(hotspots.ids[1])
    assert snap.presence_s[i1] == 300 and not snap.met[i1] and snap.scheduled[i1]
    assert snap.window_end_s[i1] == CAL.window_ms(DAY, dt.time(14), dt.time(23, 59))[1] / 1000
    i4 = snap.hotspot_id.tolist().index(hotspots.ids[4])
    assert not snap.scheduled[i4] and np.isnan(snap.window_end_s[i4]) and snap.presence_s[i4] == 0


def test_board_keeps_a_closed_day_until_a_later_one(model, hotspots):
    owned = list(hotspots.ids[:3])
    board = board_with_visits(model, hotspots, owned)
    before = board.snapshot
    empty = PartitionPresence(model, 0, owned, 1)
    board.day_closed(DAY, empty.rows(DAY, owned))  # final rows (here: built without visits)
    board.refresh(owned, lambda day: empty.rows(day, owned), ms(23))
    assert board.snapshot.day == DAY  # simulated time: the wall clock does not move the day
    assert board.snapshot.presence_s.sum() == 0  # the closed rows (here: built without visits) win
    board.saw_day(DAY + dt.timedelta(days=1))
    board.refresh(owned, lambda day: empty.rows(day, owned), ms(23))
    assert board.snapshot.day == DAY + dt.timedelta(days=1) and before.day == DAY


def test_board_follows_the_wall_clock_in_real_time(model, hotspots):
    board = TodayBoard(model, wall_clock_days=True)
    board.saw_day(DAY)
    owned = list(hotspots.ids[:2])
    board.refresh(owned, lambda day: PartitionPresence(model, 0, owned, 1).rows(day, owned), ms(12) + 86_400_000)
    assert board.snapshot.day == DAY + dt.timedelta(days=1)


def test_metric_values_and_names(model, hotspots):
    registry = CollectorRegistry()
    owned = list(hotspots.ids[:5])
    board = board_with_visits(model, hotspots, owned)
    m = DwellMetrics(registry, hotspots, runtime=FakeRuntime(), ingest=FakeIngest(), board=board,
                     ready=lambda: True, version="1.2.3")
    m.batch_processed(500, 0.004, 0.02)
    m.visit_counted(hotspots.ids[0], 1200.0, True)
    m.set_officers_present({hotspots.ids[0]: 2}, ms(16))
    s = samples(registry)
    h0 = hotspots.ids[0]
    district = hotspots.groups[0]
    assert s[("hotspot_dwell_ready", ())] == 1.0
    build = [dict(labels) for name, labels in s if name == "hotspot_dwell_build_info"]
    assert len(build) == 1 and build[0]["version"] == "1.2.3"
    assert s[("hotspot_dwell_hotspot_presence_seconds", (("hotspot_id", h0),))] == 1800
    assert s[("hotspot_dwell_hotspot_met", (("hotspot_id", h0),))] == 1.0
    assert s[("hotspot_dwell_hotspot_patrols", (("hotspot_id", h0),))] == 2
    assert s[("hotspot_dwell_officers_present", (("hotspot_id", h0),))] == 2
    assert s[("hotspot_dwell_fixes_rejected_total", (("reason", "malformed"),))] == 2
    assert s[("hotspot_dwell_fixes_rejected_total", (("reason", "duplicate"),))] == 2
    assert s[("hotspot_dwell_dead_letters_total", (("reason", "late"),))] == 1
    assert s[("hotspot_dwell_officers", ())] == 5 and s[("hotspot_dwell_state_bytes", ())] == 1500
    assert s[("hotspot_dwell_dead_letters_total", (("reason", "duplicate"),))] == 2  # every reject is dead-lettered
    assert s[("hotspot_dwell_fixes_accepted_total", ())] == 7 - 3
    assert s[("hotspot_dwell_visits_closed_by_silence_total", ())] == 3
    assert s[("hotspot_dwell_idle_advances_total", ())] == 5
    assert s[("hotspot_dwell_visit_duration_seconds_bucket", (("district", district), ("le", "1200.0")))] == 1
    assert s[("hotspot_dwell_visit_duration_seconds_bucket", (("district", district), ("le", "900.0")))] == 0
    assert s[("hotspot_dwell_patrols_completed_total", (("district", district),))] == 1
    assert s[("hotspot_dwell_batch_fixes_count", ())] == 1
    assert s[("hotspot_dwell_fix_latency_seconds_bucket", (("le", "0.025"),))] == 1
    # Compliance parts per district add up over the owned hot spots.
    sched = {k[1][0][1]: v for k, v in s.items() if k[0] == "hotspot_dwell_scheduled_hotspots"}
    met = {k[1][0][1]: v for k, v in s.items() if k[0] == "hotspot_dwell_met_hotspots"}
    assert sum(sched.values()) == 3 and sum(met.values()) == 1
    info = [k for k in s if k[0] == "hotspot_dwell_hotspot_info"]
    assert len(info) == len(owned)
    labels = dict(next(k[1] for k in info if ("hotspot_id", h0) in k[1]))
    assert labels["district"] == district and -2 < float(labels["lon"]) < 0 and 52 < float(labels["lat"]) < 54
    # Nothing officer-shaped is ever a label.
    assert not any(name in dict(k[1]) for k in s for name in ("officer_id", "device_id"))


def test_event_loop_lag_sees_a_blocked_loop(model, hotspots):
    registry = CollectorRegistry()
    m = DwellMetrics(registry, hotspots, runtime=FakeRuntime(), ingest=FakeIngest(),
                     board=board_with_visits(model, hotspots, list(hotspots.ids[:5])), ready=lambda: True)

    async def main():
        watcher = asyncio.create_task(m.watch_event_loop())
        await asyncio.sleep(0)
        time.sleep(0.12)  # the loop is blocked: the watcher's timer fires at least 70 ms late
        while samples(registry).get(("hotspot_dwell_event_loop_lag_seconds_count", ()), 0) < 1:
            await asyncio.sleep(0.01)
        watcher.cancel()

    asyncio.run(main())
    s = samples(registry)
    # The first sample is the blocked one: at least 120 - 50 ms late.
    assert s[("hotspot_dwell_event_loop_lag_seconds_count", ())] >= 1
    assert s[("hotspot_dwell_event_loop_lag_seconds_bucket", (("le", "0.05"),))] == 0
    assert s[("hotspot_dwell_event_loop_lag_seconds_sum", ())] >= 0.065



def test_very_many_hotspots_export_only_the_scheduled_or_active_ones(model, hotspots):
    owned = list(hotspots.ids)
    board = board_with_visits(model, hotspots, owned)
    snap = board.snapshot
    quiet = [h for h, sch, v in zip(snap.hotspot_id.tolist(), snap.scheduled, snap.visits) if not sch and v == 0]
    registry = CollectorRegistry()
    m = DwellMetrics(registry, hotspots, board=board, every_hotspot_up_to=len(owned) - 1)
    m.set_officers_present({quiet[0]: 1}, ms(16))  # an officer there now: active
    s = samples(registry)
    want = {h for h, sch, v in zip(snap.hotspot_id.tolist(), snap.scheduled, snap.visits) if sch or v > 0}
    want.add(quiet[0])
    for family in ("hotspot_dwell_hotspot_presence_seconds", "hotspot_dwell_officers_present"):
        assert {dict(k[1])["hotspot_id"] for k in s if k[0] == family} == want
    assert len(want) < len(owned) - 1  # quiet hot spots were left out
    # The per-district counts still cover every scheduled hot spot.
    assert sum(v for k, v in s.items() if k[0] == "hotspot_dwell_scheduled_hotspots") == snap.scheduled.sum()
    # Up to the limit, every owned hot spot has its series.
    everything = CollectorRegistry()
    DwellMetrics(everything, hotspots, board=board, every_hotspot_up_to=len(owned))
    assert {dict(k[1])["hotspot_id"] for k in samples(everything)
            if k[0] == "hotspot_dwell_hotspot_presence_seconds"} == set(owned)

def test_rebalanced_hotspots_lose_their_series(model, hotspots):
    registry = CollectorRegistry()
    board = board_with_visits(model, hotspots, list(hotspots.ids[:5]))
    DwellMetrics(registry, hotspots, board=board)
    assert any(k[1] == (("hotspot_id", hotspots.ids[0]),) for k in samples(registry))
    owned = list(hotspots.ids[3:5])  # hot spots 0-2 went to another worker
    board.refresh(owned, lambda day: PartitionPresence(model, 0, owned, 1).rows(day, owned), ms(16))
    ids = {dict(k[1]).get("hotspot_id") for k in samples(registry)}
    assert hotspots.ids[0] not in ids and hotspots.ids[3] in ids


def test_promtool_check_metrics_is_clean(model, hotspots):
    promtool = require_promtool()
    registry = CollectorRegistry()
    board = board_with_visits(model, hotspots, list(hotspots.ids[:5]))
    m = DwellMetrics(registry, hotspots, runtime=FakeRuntime(), ingest=FakeIngest(), presence=FakePresence(),
                     board=board)
    m.batch_processed(10, 0.001, 0.01)
    m.visit_counted(hotspots.ids[1], 300.0, False)
    m.set_officers_present({hotspots.ids[0]: 1}, ms(16))
    run = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry), capture_output=True)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stderr.decode().strip() == ""
