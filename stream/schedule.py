"""The patrol schedule: which hot spots are to be patrolled on which policing day.

Drawn in advance by a seeded random draw (a share of hot spots per day,
optionally per district), or written by hand in the same CSV shape:

    policing_day,hotspot_id,window_start,window_end,target_minutes
    2024-03-04,NOT-001,14:00,00:00,15
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.policing_day import parse_clock

SCHEDULE_COLUMNS = ("policing_day", "hotspot_id", "window_start", "window_end", "target_minutes")


class ScheduleFileError(ValueError):
    """A schedule file that cannot be used; the message names file, row and problem."""


@dataclass(frozen=True)
class ScheduleEntry:
    policing_day: dt.date
    hotspot_id: str
    window_start: dt.time
    window_end: dt.time
    target_minutes: float


@dataclass(frozen=True)
class Schedule:
    """Scheduled hot spot-days, at most one entry per (day, hot spot)."""

    entries: tuple[ScheduleEntry, ...]

    def __len__(self) -> int:
        return len(self.entries)

    def by_key(self) -> dict[tuple[dt.date, str], ScheduleEntry]:
        return {(e.policing_day, e.hotspot_id): e for e in self.entries}

    def days(self) -> list[dt.date]:
        return sorted({e.policing_day for e in self.entries})

    def write_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(SCHEDULE_COLUMNS)
            for e in self.entries:
                w.writerow([e.policing_day.isoformat(), e.hotspot_id, e.window_start.strftime("%H:%M"),
                            e.window_end.strftime("%H:%M"), _fmt_minutes(e.target_minutes)])


def _fmt_minutes(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def draw_schedule(hotspot_ids: Sequence[str], *, first_day: dt.date, days: int, share: float = 0.5,
                  seed: int = 0, groups: Sequence[str] | None = None, window_start: str = "14:00",
                  window_end: str = "00:00", target_minutes: float | Sequence[float] = 15.0) -> Schedule:
    """Draw a randomised schedule: about ``share`` of hot spots on each day.

    Parameters
    ----------
    hotspot_ids : sequence of str
        All hot spots in the trial.
    first_day : date
        First policing day.
    days : int
        Number of consecutive policing days.
    share : float
        Fraction of hot spots (of each group, when ``groups`` is given)
        scheduled on each day, rounded to the nearest count, at least one.
    seed : int
        Seed of the draw; the same seed and inputs give the same schedule.
    groups : sequence of str, optional
        District of each hot spot; the share is then drawn within each
        district, so every district gets its share every day.
    window_start, window_end : str
        Local patrol window, ``HH:MM`` (``24:00`` or an end before the start
        runs past midnight).
    target_minutes : float or sequence of float
        Presence needed in the window for the hot spot-day to be met: one
        value for all, or one per hot spot (e.g. the GeoJSON's own targets).
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    ids = list(hotspot_ids)
    targets = ([float(target_minutes)] * len(ids) if np.isscalar(target_minutes)
               else [float(t) for t in target_minutes])
    if len(targets) != len(ids):
        raise ValueError(f"{len(targets)} targets for {len(ids)} hot spots")
    bad = [t for t in targets if not (t > 0 and math.isfinite(t))]
    if bad:
        raise ValueError(f"target_minutes must be positive numbers, got {bad[0]}")
    if len(set(ids)) != len(ids):
        raise ValueError("hot spot ids must be unique")
    w0, w1 = parse_clock(window_start, "window_start"), parse_clock(window_end, "window_end")
    strata: dict[str, list[int]] = {}
    for i, g in enumerate(groups if groups is not None else [""] * len(ids)):
        strata.setdefault(g, []).append(i)
    rng = np.random.default_rng(seed)
    entries: list[ScheduleEntry] = []
    for d in range(days):
        day = first_day + dt.timedelta(days=d)
        chosen: list[int] = []
        for g in sorted(strata):
            members = strata[g]
            k = max(1, int(round(share * len(members))))
            chosen.extend(np.asarray(members)[rng.choice(len(members), size=k, replace=False)].tolist())
        for i in sorted(chosen):
            entries.append(ScheduleEntry(day, ids[i], w0, w1, targets[i]))
    return Schedule(tuple(entries))


def load_schedule(path: str | Path, known_hotspot_ids: Sequence[str] | None = None) -> Schedule:
    """Read a schedule CSV, checking every row.

    Raises
    ------
    ScheduleFileError
        Naming the file, the line and the problem: a missing column, an
        unparsable date, time or target, an unknown hot spot id, or the same
        hot spot twice on one day.
    """
    path = Path(path)
    known = set(known_hotspot_ids) if known_hotspot_ids is not None else None
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ScheduleFileError(f"{path}: cannot open: {exc.strerror}") from None
    try:
        return _read_schedule(path, fh, known)
    except UnicodeDecodeError:
        raise ScheduleFileError(f"{path}: not UTF-8 text (save the CSV as UTF-8)") from None


def _read_schedule(path: Path, fh, known: set[str] | None) -> Schedule:
    entries: list[ScheduleEntry] = []
    seen: dict[tuple[dt.date, str], int] = {}
    with fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in SCHEDULE_COLUMNS if c not in header]
        if missing:
            raise ScheduleFileError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num

            def fail(problem: str) -> ScheduleFileError:
                return ScheduleFileError(f"{path}: line {line}: {problem}")

            values = {c: (row.get(c) or "").strip() for c in SCHEDULE_COLUMNS}
            if not any(values.values()):
                continue
            try:
                day = dt.date.fromisoformat(values["policing_day"])
            except ValueError:
                raise fail(f"policing_day {values['policing_day']!r} is not a date YYYY-MM-DD") from None
            hid = values["hotspot_id"]
            if not hid:
                raise fail("hotspot_id is empty")
            if known is not None and hid not in known:
                raise fail(f"hotspot_id {hid!r} is not in the hot spot file")
            try:
                w0 = parse_clock(values["window_start"], "window_start")
                w1 = parse_clock(values["window_end"], "window_end")
            except ValueError as exc:
                raise fail(str(exc)) from None
            try:
                target = float(values["target_minutes"])
            except ValueError:
                raise fail(f"target_minutes {values['target_minutes']!r} is not a number") from None
            if not (target > 0 and math.isfinite(target)):
                raise fail(f"target_minutes must be positive, got {values['target_minutes']}")
            if (day, hid) in seen:
                raise fail(f"hot spot {hid!r} is scheduled twice on {day} (first on line {seen[(day, hid)]})")
            seen[(day, hid)] = line
            entries.append(ScheduleEntry(day, hid, w0, w1, target))
    return Schedule(tuple(entries))
