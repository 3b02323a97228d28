"""Output tables of a replay: visits, patrols, hot spot-days and compliance.

Tables are columnar (a dict of numpy arrays), so ``pandas.DataFrame(t.columns)``
works in a notebook and a year of a force's fixes never becomes rows of
Python objects.
"""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geo.hotspots import HotspotSet
from kernels.intervals import merge_intervals, union_length_within
from stream.engine import Visits
from stream.fixes import OfficerRegistry
from stream.policing_day import PolicingCalendar
from stream.schedule import Schedule

# Event ids are uuid5 in this namespace, so a replay after a crash gives the
# same ids and consumers can de-duplicate.
EVENT_NAMESPACE = uuid.UUID("6d1f3c57-0b8e-4f0e-9a57-3f6b0d6c2a11")


@dataclass(frozen=True)
class Table:
    """Named columns of equal length, in output order."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return 0 if not self.columns else int(next(iter(self.columns.values())).shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def rows(self) -> list[tuple]:
        cols = [c.tolist() for c in self.columns.values()]
        return list(zip(*cols))

    def write_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(list(self.columns))
            cols = [_csv_column(c) for c in self.columns.values()]
            w.writerows(zip(*cols))


def _csv_column(col: np.ndarray) -> list:
    if col.dtype.kind == "f":
        out = np.round(col, 3).tolist()
        return ["" if v != v else (int(v) if float(v).is_integer() else v) for v in out]
    if col.dtype.kind == "b":
        return ["true" if v else "false" for v in col.tolist()]
    return col.tolist()


def rfc3339_utc(ts_ms: np.ndarray) -> np.ndarray:
    """Epoch ms to ``YYYY-MM-DDTHH:MM:SS.sssZ`` strings, vectorised."""
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    text = np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms")
    return np.char.add(text.astype(str), "Z") if ts_ms.size else np.empty(0, dtype=str)


def patrol_event_id(officer_id: str, hotspot_id: str, start_ms: int) -> str:
    """Deterministic id of a ``patrol.completed`` event."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"patrol.completed|{officer_id}|{hotspot_id}|{start_ms}"))


def visits_table(visits: Visits, registry: OfficerRegistry, hotspots: HotspotSet) -> Table:
    v = visits.sorted()
    ids = np.asarray(hotspots.ids, dtype=object)
    return Table({
        "officer_id": registry.ids_of(v.officer),
        "hotspot_id": ids[v.hotspot] if len(v.hotspot) else np.empty(0, object),
        "start": rfc3339_utc(v.start_ms),
        "end": rfc3339_utc(v.end_ms),
        "duration_s": (v.end_ms - v.start_ms) / 1000.0,
        "fixes": v.n_fixes,
    })


def patrols_table(visits: Visits, registry: OfficerRegistry, hotspots: HotspotSet, min_patrol_s: float) -> Table:
    v = visits.sorted()
    keep = (v.end_ms - v.start_ms) >= min_patrol_s * 1000.0
    v = Visits(*(a[keep] for a in v))
    officers = registry.ids_of(v.officer)
    hs = np.asarray(hotspots.ids, dtype=object)[v.hotspot] if len(v.hotspot) else np.empty(0, object)
    event_ids = np.array([patrol_event_id(o, h, int(s)) for o, h, s in zip(officers, hs, v.start_ms)],
                         dtype=object)
    return Table({
        "event_id": event_ids,
        "officer_id": officers,
        "hotspot_id": hs,
        "start": rfc3339_utc(v.start_ms),
        "end": rfc3339_utc(v.end_ms),
        "duration_s": (v.end_ms - v.start_ms) / 1000.0,
    })


def _day_range(visits: Visits, schedule: Schedule | None, calendar: PolicingCalendar) -> list[dt.date]:
    days: set[dt.date] = set(schedule.days()) if schedule else set()
    if len(visits.start_ms):
        days.add(calendar.day_of_ms(int(visits.start_ms.min())))
        days.add(calendar.day_of_ms(int(visits.end_ms.max())))
    if not days:
        return []
    first, last = min(days), max(days)
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def hotspot_days_table(visits: Visits, hotspots: HotspotSet, schedule: Schedule | None,
                       calendar: PolicingCalendar, min_patrol_s: float) -> Table:
    """The evaluation table: one row per hot spot per policing day in range.

    ``presence_s`` is the union of all officers' visits in the policing day
    (patrol-minutes x 60), ``officer_s`` their sum, ``window_presence_s`` the
    union inside the scheduled patrol window, and ``met`` whether that reached
    the target.
    """
    days = _day_range(visits, schedule, calendar)
    n_h, n_d = len(hotspots), len(days)
    if n_d == 0:
        return Table({name: np.empty(0) for name in HOTSPOT_DAY_COLUMNS})
    _, bounds = calendar.day_bounds_ms(days[0], days[-1])
    hs_idx = np.repeat(np.arange(n_h, dtype=np.int64), n_d)
    day_idx = np.tile(np.arange(n_d, dtype=np.int64), n_h)

    merged = merge_intervals(visits.hotspot, visits.start_ms, visits.end_ms)
    presence_ms = union_length_within(merged, hs_idx, bounds[day_idx], bounds[day_idx + 1])

    # Split every visit into its pieces per policing day.
    d0 = np.clip(np.searchsorted(bounds, visits.start_ms, side="right") - 1, 0, n_d - 1)
    d1 = np.clip(np.searchsorted(bounds, visits.end_ms, side="right") - 1, 0, n_d - 1)
    n_pieces = d1 - d0 + 1
    piece_visit = np.repeat(np.arange(len(d0)), n_pieces)
    piece_day = d0[piece_visit] + (np.arange(piece_visit.size) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces))
    p_start = np.maximum(visits.start_ms[piece_visit], bounds[piece_day])
    p_end = np.minimum(visits.end_ms[piece_visit], bounds[piece_day + 1])
    key = visits.hotspot[piece_visit] * n_d + piece_day
    size = n_h * n_d
    officer_ms = np.bincount(key, weights=np.maximum(p_end - p_start, 0), minlength=size)
    visit_count = np.bincount(key, minlength=size)
    is_patrol = (visits.end_ms - visits.start_ms)[piece_visit] >= min_patrol_s * 1000.0
    patrol_count = np.bincount(key[is_patrol], minlength=size)

    scheduled = np.zeros(size, bool)
    target = np.full(size, np.nan)
    win_start = np.zeros(size, np.int64)
    win_end = np.zeros(size, np.int64)
    if schedule:
        day_pos = {d: k for k, d in enumerate(days)}
        for e in schedule.entries:
            k = hotspots.index_of(e.hotspot_id) * n_d + day_pos[e.policing_day]
            scheduled[k] = True
            target[k] = e.target_minutes
            win_start[k], win_end[k] = calendar.window_ms(e.policing_day, e.window_start, e.window_end)
    window_ms = np.where(scheduled, union_length_within(merged, hs_idx, win_start, win_end), 0)
    met = scheduled & (window_ms >= np.nan_to_num(target) * 60_000.0)
    day_text = np.array([d.isoformat() for d in days], dtype=object)
    return Table({
        "policing_day": day_text[day_idx],
        "hotspot_id": np.asarray(hotspots.ids, dtype=object)[hs_idx],
        "scheduled": scheduled,
        "target_minutes": target,
        "presence_s": presence_ms / 1000.0,
        "officer_s": officer_ms / 1000.0,
        "visits": visit_count,
        "patrols": patrol_count,
        "met": met,
        "window_presence_s": window_ms / 1000.0,
    })


HOTSPOT_DAY_COLUMNS = ("policing_day", "hotspot_id", "scheduled", "target_minutes", "presence_s", "officer_s",
                       "visits", "patrols", "met", "window_presence_s")


def compliance_table(hotspot_days: Table, hotspots: HotspotSet) -> Table:
    """Met / scheduled per policing day, overall (group ``all``) and per district.

    ``unscheduled_patrolled`` counts hot spots that had a patrol on a day they
    were not scheduled: contamination of the control days in a trial.
    """
    group_of = dict(zip(hotspots.ids, hotspots.groups))
    out: dict[str, list] = {k: [] for k in ("policing_day", "group", "scheduled", "met", "compliance",
                                            "unscheduled_patrolled")}
    if len(hotspot_days) == 0:
        return Table({k: np.empty(0) for k in out})
    days = hotspot_days["policing_day"]
    groups = np.array([group_of[h] for h in hotspot_days["hotspot_id"]], dtype=object)
    sched = hotspot_days["scheduled"]
    met = hotspot_days["met"]
    contaminated = ~sched & (hotspot_days["patrols"] > 0)
    district_names = sorted({g for g in hotspots.groups if g})
    for day in sorted(set(days.tolist())):
        on_day = days == day
        for name in ["all"] + district_names:
            sel = on_day if name == "all" else on_day & (groups == name)
            n_s, n_m = int(np.sum(sched & sel)), int(np.sum(met & sel))
            out["policing_day"].append(day)
            out["group"].append(name)
            out["scheduled"].append(n_s)
            out["met"].append(n_m)
            out["compliance"].append(n_m / n_s if n_s else np.nan)
            out["unscheduled_patrolled"].append(int(np.sum(contaminated & sel)))
    return Table({k: np.asarray(v, dtype=float if k == "compliance" else object) for k, v in out.items()})
