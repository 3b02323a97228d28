"""Output tables of a replay: visits, patrols, hot spot-days and compliance.

Tables are columnar (a dict of numpy arrays), so ``pandas.DataFrame(t.columns)``
works in a notebook and a year of a force's fixes never becomes rows of
Python objects.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
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


_NAMESPACE_SHA1: dict[uuid.UUID, object] = {}
# The RFC 4122 variant bits (10xx) set in the hex digit that holds them.
_VARIANT_DIGIT = {d: "89ab"[int(d, 16) & 0x3] for d in "0123456789abcdef"}


def uuid5_text(name: str, namespace: uuid.UUID = EVENT_NAMESPACE) -> str:
    """``str(uuid.uuid5(namespace, name))``, without building UUID objects (a third of the cost per event)
    and with the namespace's hash state computed once."""
    base = _NAMESPACE_SHA1.get(namespace)
    if base is None:
        base = _NAMESPACE_SHA1[namespace] = hashlib.sha1(namespace.bytes)
    h = base.copy()
    h.update(name.encode())
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT_DIGIT[x[16]]}{x[17:20]}-{x[20:32]}"


def patrol_event_id(officer_id: str, hotspot_id: str, start_ms: int) -> str:
    """Deterministic id of a ``patrol.completed`` event."""
    return uuid5_text(f"patrol.completed|{officer_id}|{hotspot_id}|{start_ms}")


def sorted_by_ids(visits: Visits, registry: OfficerRegistry, hotspots: HotspotSet) -> Visits:
    """Visits by (start, officer id, hot spot id): the same order however the input was cut."""
    officer = registry.ids_of(visits.officer).astype(str)
    hotspot = np.asarray(hotspots.ids, dtype=str)[visits.hotspot] if len(visits.hotspot) else np.empty(0, str)
    order = np.lexsort((hotspot, officer, visits.start_ms))
    return Visits(*(a[order] for a in visits))


def visits_table(visits: Visits, registry: OfficerRegistry, hotspots: HotspotSet, *,
                 rule_columns: bool = True) -> Table:
    """One row per visit; ``rule_columns``: with the interval and gap limit each closed under (not for
    true visits, which no rule made)."""
    v = sorted_by_ids(visits, registry, hotspots)
    ids = np.asarray(hotspots.ids, dtype=object)
    columns = {
        "officer_id": registry.ids_of(v.officer),
        "hotspot_id": ids[v.hotspot] if len(v.hotspot) else np.empty(0, object),
        "start": rfc3339_utc(v.start_ms),
        "end": rfc3339_utc(v.end_ms),
        "duration_s": (v.end_ms - v.start_ms) / 1000.0,
        "fixes": v.n_fixes,
    }
    if rule_columns:
        columns["interval_s"] = v.interval_ms / 1000.0  # the officer's reporting interval when it closed (0: unknown)
        columns["gap_limit_s"] = v.gap_limit_ms / 1000.0  # the gap limit it closed under
    return Table(columns)


def patrols_table(visits: Visits, registry: OfficerRegistry, hotspots: HotspotSet, min_patrol_s: float) -> Table:
    v = sorted_by_ids(visits, registry, hotspots)
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


def _day_span(visits: Visits, schedule: Schedule | None, calendar: PolicingCalendar,
              days_wanted: list[dt.date] | None = None) -> list[dt.date]:
    days: set[dt.date] = set(schedule.days()) if schedule else set()
    days.update(days_wanted or ())
    if len(visits.start_ms):
        days.add(calendar.day_of_ms(int(visits.start_ms.min())))
        days.add(calendar.day_of_ms(int(visits.end_ms.max())))
    if not days:
        return []
    first, last = min(days), max(days)
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def _sum_by_key(keys: np.ndarray, weights: np.ndarray | None, query: np.ndarray) -> np.ndarray:
    """Sum of ``weights`` (or a count) per key, looked up for each ``query`` key."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    totals = np.bincount(inverse, weights=weights, minlength=uniq.size)
    pos = np.searchsorted(uniq, query)
    found = (pos < uniq.size) & (uniq[np.minimum(pos, max(uniq.size - 1, 0))] == query) if uniq.size else \
        np.zeros(query.shape, bool)
    out = np.zeros(query.shape, dtype=totals.dtype if totals.size else np.float64)
    out[found] = totals[pos[found]]
    return out


def hotspot_days_table(visits: Visits, hotspots: HotspotSet, schedule: Schedule | None,
                       calendar: PolicingCalendar, min_patrol_s: float, *, days: list[dt.date] | None = None,
                       hotspot_index: np.ndarray | None = None) -> Table:
    """The evaluation table: one row per hot spot per policing day.

    The days are the scheduled days and the days with any visit (a stray
    fix with a wrong clock adds its own day, not every day in between).
    ``presence_s`` is the union of all officers' visits in the policing day
    (patrol-minutes x 60), ``officer_s`` their sum, ``visits`` the visits
    overlapping the day, ``patrols`` the patrols that started in it,
    ``window_presence_s`` the union inside the scheduled patrol window, and
    ``met`` whether that reached the target.

    ``days`` (only those days) and ``hotspot_index`` (only those hot spots)
    restrict the rows; the stream closes one day for its own hot spots so.
    """
    span = _day_span(visits, schedule, calendar, days)
    n_h, n_d = len(hotspots), len(span)
    if n_d == 0:
        return Table({name: np.empty(0) for name in HOTSPOT_DAY_COLUMNS})
    _, bounds = calendar.day_bounds_ms(span[0], span[-1])

    # Split every visit into its pieces per policing day.
    d0 = np.clip(np.searchsorted(bounds, visits.start_ms, side="right") - 1, 0, n_d - 1)
    d1 = np.clip(np.searchsorted(bounds, visits.end_ms, side="right") - 1, 0, n_d - 1)
    n_pieces = d1 - d0 + 1
    piece_visit = np.repeat(np.arange(len(d0)), n_pieces)
    piece_day = d0[piece_visit] + (np.arange(piece_visit.size) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces))
    p_start = np.maximum(visits.start_ms[piece_visit], bounds[piece_day])
    p_end = np.minimum(visits.end_ms[piece_visit], bounds[piece_day + 1])
    piece_key = visits.hotspot[piece_visit] * n_d + piece_day
    # A patrol counts once, on the day it started, so the column adds up to patrols.csv.
    is_patrol = (visits.end_ms - visits.start_ms) >= min_patrol_s * 1000.0
    patrol_key = visits.hotspot[is_patrol] * n_d + d0[is_patrol]

    day_pos = {d: k for k, d in enumerate(span)}
    entries = schedule.entries if schedule else ()
    sched_key = np.array([hotspots.index_of(e.hotspot_id) * n_d + day_pos[e.policing_day] for e in entries],
                         dtype=np.int64)
    days_used = np.union1d(piece_day, sched_key % n_d if sched_key.size else np.empty(0, np.int64))
    if days is not None:
        days_used = np.array(sorted(day_pos[d] for d in days), dtype=np.int64)
    rows_hs = np.arange(n_h, dtype=np.int64) if hotspot_index is None else np.unique(hotspot_index)
    hs_idx = np.repeat(rows_hs, days_used.size)
    day_idx = np.tile(days_used.astype(np.int64), rows_hs.size)
    key = hs_idx * n_d + day_idx
    # Schedule entries outside the requested rows are left out.
    in_rows = np.isin(sched_key, key)
    sched_key = sched_key[in_rows]
    entries = [e for e, keep in zip(entries, in_rows) if keep]

    merged = merge_intervals(visits.hotspot, visits.start_ms, visits.end_ms)
    presence_ms = union_length_within(merged, hs_idx, bounds[day_idx], bounds[day_idx + 1])
    officer_ms = _sum_by_key(piece_key, np.maximum(p_end - p_start, 0).astype(np.float64), key)
    visit_count = _sum_by_key(piece_key, None, key).astype(np.int64)
    patrol_count = _sum_by_key(patrol_key, None, key).astype(np.int64)

    pos = np.searchsorted(key, sched_key)  # key is sorted: hot spot major, day minor
    scheduled = np.zeros(key.size, bool)
    scheduled[pos] = True
    target = np.full(key.size, np.nan)
    target[pos] = [e.target_minutes for e in entries]
    win_start = np.zeros(key.size, np.int64)
    win_end = np.zeros(key.size, np.int64)
    for k, e in zip(pos, entries):
        win_start[k], win_end[k] = calendar.window_ms(e.policing_day, e.window_start, e.window_end)
    window_ms = np.where(scheduled, union_length_within(merged, hs_idx, win_start, win_end), 0)
    met = scheduled & (window_ms >= np.nan_to_num(target) * 60_000.0)
    day_text = np.array([d.isoformat() for d in span], dtype=object)
    order = np.lexsort((hs_idx, day_idx))  # by day, then hot spot
    columns = {
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
    }
    return Table({name: col[order] for name, col in columns.items()})


HOTSPOT_DAY_COLUMNS = ("policing_day", "hotspot_id", "scheduled", "target_minutes", "presence_s", "officer_s",
                       "visits", "patrols", "met", "window_presence_s")


def compliance_table(hotspot_days: Table, hotspots: HotspotSet) -> Table:
    """Met / scheduled per policing day, overall (group ``all``) and per district.

    ``unscheduled_patrolled`` counts hot spots that had a patrol on a day they
    were not scheduled: contamination of the control days in a trial.
    """
    names = ("policing_day", "group", "scheduled", "met", "compliance", "unscheduled_patrolled")
    if len(hotspot_days) == 0:
        return Table({k: np.empty(0) for k in names})
    group_of = dict(zip(hotspots.ids, hotspots.groups))
    groups = np.array([group_of[h] for h in hotspot_days["hotspot_id"]], dtype=object)
    days = hotspot_days["policing_day"].astype(str)
    sched = hotspot_days["scheduled"]
    met = hotspot_days["met"]
    contaminated = ~sched & (hotspot_days["patrols"] > 0)
    # Every row counts for its day's "all" row and, if it has one, its district's.
    has_group = groups != ""
    row_day = np.concatenate([days, days[has_group]])
    row_group = np.concatenate([np.full(days.size, "all", dtype=object), groups[has_group]]).astype(str)
    # Sorting key: "all" first, then districts by name.
    rank = np.where(row_group == "all", "0", np.char.add("1", row_group))
    keys = np.char.add(np.char.add(row_day, "|"), rank)
    uniq, inverse = np.unique(keys, return_inverse=True)
    both = np.concatenate([np.arange(days.size), np.flatnonzero(has_group)])
    n_s = np.bincount(inverse, weights=sched[both], minlength=uniq.size).astype(np.int64)
    n_m = np.bincount(inverse, weights=met[both], minlength=uniq.size).astype(np.int64)
    n_c = np.bincount(inverse, weights=contaminated[both], minlength=uniq.size).astype(np.int64)
    first = np.zeros(uniq.size, np.int64)
    first[inverse[::-1]] = np.arange(inverse.size)[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        compliance = np.where(n_s > 0, n_m / np.maximum(n_s, 1), np.nan)
    return Table({
        "policing_day": row_day[first].astype(object),
        "group": row_group[first].astype(object),
        "scheduled": n_s.astype(object),
        "met": n_m.astype(object),
        "compliance": compliance,
        "unscheduled_patrolled": n_c.astype(object),
    })
