"""Policing days in local time, across both clock changes."""

import datetime as dt

import pytest

from stream.policing_day import PolicingCalendar, parse_clock

LONDON = PolicingCalendar("Europe/London", "06:00")
H = 3_600_000


def _ms(*args, tz=dt.timezone.utc) -> int:
    return int(dt.datetime(*args, tzinfo=tz).timestamp() * 1000)


def test_day_boundary_is_0600_local_in_winter_and_summer():
    assert LONDON.day_start_ms(dt.date(2024, 1, 15)) == _ms(2024, 1, 15, 6)  # GMT
    assert LONDON.day_start_ms(dt.date(2024, 7, 15)) == _ms(2024, 7, 15, 5)  # BST = UTC+1


def test_spring_forward_day_is_23_hours_and_autumn_day_25():
    _, bounds = LONDON.day_bounds_ms(dt.date(2024, 3, 30), dt.date(2024, 3, 30))
    assert bounds[1] - bounds[0] == 23 * H
    _, bounds = LONDON.day_bounds_ms(dt.date(2024, 10, 26), dt.date(2024, 10, 26))
    assert bounds[1] - bounds[0] == 25 * H


def test_day_of_instant():
    assert LONDON.day_of_ms(_ms(2024, 1, 16, 5, 59, 59)) == dt.date(2024, 1, 15)
    assert LONDON.day_of_ms(_ms(2024, 1, 16, 6, 0, 0)) == dt.date(2024, 1, 16)
    assert LONDON.day_of_ms(_ms(2024, 7, 16, 4, 59, 59)) == dt.date(2024, 7, 15)


def test_window_past_midnight_belongs_to_the_policing_day():
    start, end = LONDON.window_ms(dt.date(2024, 1, 15), parse_clock("15:00"), parse_clock("24:00"))
    assert (start, end) == (_ms(2024, 1, 15, 15), _ms(2024, 1, 16, 0))
    start, end = LONDON.window_ms(dt.date(2024, 1, 15), parse_clock("22:00"), parse_clock("02:00"))
    assert (start, end) == (_ms(2024, 1, 15, 22), _ms(2024, 1, 16, 2))
    # Early hours before 06:00 are the next calendar date of the same policing day.
    start, end = LONDON.window_ms(dt.date(2024, 1, 15), parse_clock("01:00"), parse_clock("03:00"))
    assert (start, end) == (_ms(2024, 1, 16, 1), _ms(2024, 1, 16, 3))


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="time zone"):
        PolicingCalendar("Mars/Olympus", "06:00")
    with pytest.raises(ValueError, match="clock time"):
        PolicingCalendar("Europe/London", "6 am")
