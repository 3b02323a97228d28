"""Schedule: seeded draw, CSV round trip, and errors that name file, line and problem."""

import datetime as dt

import pytest

from stream.schedule import ScheduleFileError, draw_schedule, load_schedule

IDS = [f"H{i:02d}" for i in range(20)]
GROUPS = ["north"] * 12 + ["south"] * 8


def test_draw_is_seeded_and_takes_the_share_each_day():
    a = draw_schedule(IDS, first_day=dt.date(2024, 3, 1), days=10, share=0.5, seed=3)
    b = draw_schedule(IDS, first_day=dt.date(2024, 3, 1), days=10, share=0.5, seed=3)
    c = draw_schedule(IDS, first_day=dt.date(2024, 3, 1), days=10, share=0.5, seed=4)
    assert a == b and a != c
    for day in a.days():
        assert sum(e.policing_day == day for e in a.entries) == 10
    # Randomised by day: not the same half every day.
    assert len({tuple(e.hotspot_id for e in a.entries if e.policing_day == d) for d in a.days()}) > 1


def test_draw_per_district_gives_each_district_its_share():
    s = draw_schedule(IDS, first_day=dt.date(2024, 3, 1), days=5, share=0.5, seed=1, groups=GROUPS)
    group_of = dict(zip(IDS, GROUPS))
    for day in s.days():
        todays = [group_of[e.hotspot_id] for e in s.entries if e.policing_day == day]
        assert todays.count("north") == 6 and todays.count("south") == 4


def test_csv_round_trip(tmp_path):
    s = draw_schedule(IDS, first_day=dt.date(2024, 3, 1), days=3, seed=9, window_start="15:00",
                      window_end="24:00", target_minutes=20)
    s.write_csv(tmp_path / "s.csv")
    assert load_schedule(tmp_path / "s.csv", IDS) == s


@pytest.mark.parametrize("row, problem", [
    ("2024-03-01,H99,14:00,00:00,15", "H99' is not in the hot spot file"),
    ("2024-02-30,H01,14:00,00:00,15", "is not a date"),
    ("2024-03-01,H01,2pm,00:00,15", "window_start"),
    ("2024-03-01,H01,14:00,00:00,ten", "target_minutes 'ten' is not a number"),
    ("2024-03-01,H01,14:00,00:00,-5", "must be positive"),
    ("2024-03-01,H00,14:00,00:00,15", "scheduled twice on 2024-03-01 (first on line 2)"),
])
def test_bad_rows_name_file_line_and_problem(tmp_path, row, problem):
    path = tmp_path / "bad.csv"
    path.write_text("policing_day,hotspot_id,window_start,window_end,target_minutes\n"
                    "2024-03-01,H00,14:00,00:00,15\n" + row + "\n")
    with pytest.raises(ScheduleFileError) as err:
        load_schedule(path, IDS)
    assert str(path) in str(err.value) and "line 3" in str(err.value) and problem in str(err.value)


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("policing_day,hotspot_id\n2024-03-01,H00\n")
    with pytest.raises(ScheduleFileError, match="line 1: missing column.*window_start"):
        load_schedule(path, IDS)
