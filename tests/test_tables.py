"""Rule 9 and 10 on hand-made visits: presence, officer time, met, compliance, contamination."""

import datetime as dt

import numpy as np
import pytest

from stream.engine import Visits
from stream.policing_day import PolicingCalendar, parse_clock
from stream.schedule import Schedule, ScheduleEntry
from stream.tables import compliance_table, hotspot_days_table
from tests.test_replay import test_hotspots  # A, B (north), C, D (south)

CAL = PolicingCalendar("Europe/London", "06:00")
DAY = dt.date(2024, 1, 15)  # GMT: local = UTC
MIN = 60_000


def _at(hh, mm=0, day=DAY):
    return int(dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=dt.timezone.utc).timestamp() * 1000)


def _visits(*rows):
    """rows: (officer, hotspot index, start_ms, end_ms)."""
    a = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return Visits(a[:, 0], a[:, 1], a[:, 2], a[:, 3], np.ones(len(a), np.int64), np.zeros(len(a), np.int64),
                  np.zeros(len(a), np.int64))


def _schedule(*hotspot_ids, window=("14:00", "00:00"), target=15.0, day=DAY):
    return Schedule(tuple(ScheduleEntry(day, h, parse_clock(window[0]), parse_clock(window[1]), target)
                          for h in hotspot_ids))


def _row(table, day, hotspot):
    sel = np.flatnonzero((table["policing_day"] == day.isoformat()) & (table["hotspot_id"] == hotspot))
    assert sel.size == 1
    return {name: col[sel[0]] for name, col in table.columns.items()}


def test_two_officers_together_are_one_presence_and_twice_the_officer_time():
    hd = hotspot_days_table(_visits((0, 0, _at(15), _at(15, 15)), (1, 0, _at(15), _at(15, 15))), test_hotspots(),
                            _schedule("A"), CAL, 900)
    r = _row(hd, DAY, "A")
    assert (r["presence_s"], r["officer_s"], r["visits"], r["patrols"]) == (900, 1800, 2, 2)
    assert r["met"]


def test_presence_before_the_window_does_not_meet_the_target():
    hd = hotspot_days_table(_visits((0, 0, _at(13), _at(14, 10))), test_hotspots(), _schedule("A"), CAL, 900)
    r = _row(hd, DAY, "A")
    assert r["presence_s"] == 70 * 60 and r["window_presence_s"] == 10 * 60 and not r["met"]


def test_short_visits_in_the_window_add_up_to_the_target():
    hd = hotspot_days_table(_visits((0, 0, _at(16), _at(16, 8)), (1, 0, _at(20), _at(20, 7))), test_hotspots(),
                            _schedule("A"), CAL, 900)
    r = _row(hd, DAY, "A")
    assert r["window_presence_s"] == 15 * 60 and r["met"] and r["patrols"] == 0


def test_compliance_per_district_and_contamination_of_unscheduled_days():
    hs = test_hotspots()
    visits = _visits((0, 0, _at(15), _at(15, 20)),  # A scheduled, met
                     (0, 2, _at(16), _at(16, 20)))  # C unscheduled, patrolled: contamination
    hd = hotspot_days_table(visits, hs, _schedule("A", "B", "D"), CAL, 900)
    c = compliance_table(hd, hs)
    rows = {g: (s, m, comp, u) for d, g, s, m, comp, u in c.rows()}
    assert rows["all"][:2] == (3, 1) and rows["all"][2] == pytest.approx(1 / 3) and rows["all"][3] == 1
    assert rows["north"][:3] == (2, 1, 0.5) and rows["south"][:2] == (1, 0) and rows["south"][3] == 1


def test_patrol_across_0600_counts_on_the_day_it_started():
    visits = _visits((0, 1, _at(5, 50, DAY + dt.timedelta(days=1)), _at(6, 10, DAY + dt.timedelta(days=1))))
    hd = hotspot_days_table(visits, test_hotspots(), None, CAL, 900)
    first, second = _row(hd, DAY, "B"), _row(hd, DAY + dt.timedelta(days=1), "B")
    assert (first["presence_s"], second["presence_s"]) == (600, 600)
    assert (first["patrols"], second["patrols"]) == (1, 0)
    assert first["visits"] == second["visits"] == 1


def test_a_stray_day_adds_its_own_rows_not_every_day_between():
    visits = _visits((0, 0, _at(15), _at(15, 1)), (0, 0, _at(15, day=dt.date(2030, 1, 1)), _at(15, 1, dt.date(2030, 1, 1))))
    hd = hotspot_days_table(visits, test_hotspots(), None, CAL, 900)
    assert sorted(set(hd["policing_day"].tolist())) == ["2024-01-15", "2030-01-01"]
    assert len(hd) == 2 * 4


def test_window_on_the_autumn_clock_change_is_in_local_time():
    day = dt.date(2024, 10, 26)  # 25-hour policing day; 01:00-02:00 local happens twice
    sched = _schedule("A", window=("00:00", "03:00"), target=60, day=day)
    # 00:00-03:00 local on 27 Oct is 23:00 UTC (26th) to 03:00 UTC: four hours.
    visits = _visits((0, 0, _at(23, 0, day), _at(3, 0, day + dt.timedelta(days=1))))
    r = _row(hotspot_days_table(visits, test_hotspots(), sched, CAL, 900), day, "A")
    assert r["window_presence_s"] == 4 * 3600 and r["met"]


def test_uuid5_text_is_uuid5():
    import uuid

    from stream.tables import EVENT_NAMESPACE, uuid5_text

    for name in ("", "visit|officer-1|NOT-001|1711800000000", "é|漢字|🚓"):
        assert uuid5_text(name) == str(uuid.uuid5(EVENT_NAMESPACE, name))
