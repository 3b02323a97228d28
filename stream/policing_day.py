"""Policing days: local-time days that start at ``day_start`` (06:00 by default).

Thames Valley's policing day runs 06:00:00-05:59:59 local time. Day
boundaries are computed in local time with zoneinfo, so a day across a
clock change is 23 or 25 hours long.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np

_MS = 1000


def parse_clock(text: str, what: str = "time") -> dt.time:
    """``HH:MM`` or ``HH:MM:SS``; ``24:00`` means the end of the day."""
    text = text.strip()
    if text in ("24:00", "24:00:00"):
        return dt.time(0, 0)
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a clock time HH:MM") from None


@dataclass(frozen=True)
class PolicingCalendar:
    """Maps instants to policing days and local clock times to instants.

    Parameters
    ----------
    timezone : str
        IANA zone of the force, e.g. ``Europe/London``.
    day_start : str
        Local clock time at which a policing day begins, ``HH:MM``.
    """

    timezone: str = "Europe/London"
    day_start: str = "06:00"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except Exception:
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        parse_clock(self.day_start, "day_start")

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def start_clock(self) -> dt.time:
        return parse_clock(self.day_start, "day_start")

    def local_instant_ms(self, day: dt.date, clock: dt.time) -> int:
        """Epoch ms of a local clock time on a calendar date (DST aware)."""
        local = dt.datetime.combine(day, clock, tzinfo=self.zone)
        return int(local.timestamp()) * _MS

    @cached_property
    def _memo(self) -> dict:
        # day -> start ms, and the last day looked up as [start ms, end ms, day]:
        # streams ask about the same day over and over.
        return {"starts": {}, "last": None}

    def day_start_ms(self, day: dt.date) -> int:
        starts = self._memo["starts"]
        ms = starts.get(day)
        if ms is None:
            ms = starts[day] = self.local_instant_ms(day, self.start_clock)
        return ms

    def day_of_ms(self, ts_ms: int) -> dt.date:
        """The policing day an instant belongs to."""
        last = self._memo["last"]
        if last is not None and last[0] <= ts_ms < last[1]:
            return last[2]
        local = dt.datetime.fromtimestamp(ts_ms / _MS, tz=self.zone)
        day = local.date()
        day = day if local.time() >= self.start_clock else day - dt.timedelta(days=1)
        lo, hi = self.day_start_ms(day), self.day_start_ms(day + dt.timedelta(days=1))
        if lo <= ts_ms < hi:  # (not so only for a day start inside a DST gap: then no memo)
            self._memo["last"] = (lo, hi, day)
        return day

    def day_bounds_ms(self, first: dt.date, last: dt.date) -> tuple[list[dt.date], np.ndarray]:
        """Days ``first..last`` and their boundaries (``n + 1`` instants, ms)."""
        days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
        bounds = np.array([self.day_start_ms(d) for d in days] + [self.day_start_ms(last + dt.timedelta(days=1))],
                          dtype=np.int64)
        return days, bounds

    def window_ms(self, day: dt.date, start: dt.time, end: dt.time) -> tuple[int, int]:
        """A patrol window of a policing day as ``[start, end)`` in epoch ms.

        Clock times before ``day_start`` belong to the next calendar date (a
        22:00-02:00 window of Friday's policing day ends on Saturday), and an
        end at or before the start wraps past midnight (``15:00-24:00``).
        """
        def instant(clock: dt.time) -> dt.datetime:
            date = day if clock >= self.start_clock else day + dt.timedelta(days=1)
            return dt.datetime.combine(date, clock, tzinfo=self.zone)

        a = instant(start)
        b = instant(end)
        if b <= a:
            b = dt.datetime.combine(b.date() + dt.timedelta(days=1), end, tzinfo=self.zone)
        return int(a.timestamp()) * _MS, int(b.timestamp()) * _MS
