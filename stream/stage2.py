"""Stage 2 as pure functions: hot spot-day presence, dosage and the day's close.

State is one small JSON document per (hot spot, policing day): the visits
seen (by id, so a visit re-sent after a crash counts once) and whether the
dosage was already reported. The numbers of a closed day come from the same
:func:`stream.tables.hotspot_days_table` the replay uses, so a stream and a
replay of the same fixes give the same hot spot-day rows.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

import numpy as np

from geo.hotspots import HotspotSet
from stream.engine import Visits
from stream.events import ce_headers
from stream.policing_day import PolicingCalendar
from stream.schedule import Schedule
from stream.tables import EVENT_NAMESPACE, Table, hotspot_days_table, rfc3339_utc

DOSAGE_MET = "hotspot.dosage_met"
DAY_CLOSED = "hotspot.day_closed"

Event = tuple[bytes, bytes, list]  # key, value, headers


def day_key(hotspot_id: str, day: dt.date) -> bytes:
    return f"{hotspot_id}|{day.isoformat()}".encode()


def marks_key(partition: int) -> bytes:
    # Per partition: a worker's table holds the keys of all its partitions.
    return f"marks|{partition}".encode()


def fold_mark(doc: dict, source: int, day: dt.date, had_visits: bool, n_sources: int) -> list[dt.date]:
    """Fold a cumulative mark into a partition's marks document.

    Returns the days that are now closed everywhere (every input partition
    has closed them) and were not closed before, oldest first; the caller
    emits their rows and records them in ``doc["closed"]``.
    """
    through = doc.setdefault("through", {})
    key = str(source)
    if key not in through or through[key] < day.isoformat():
        through[key] = day.isoformat()
    days = doc.setdefault("days", {})
    days[day.isoformat()] = bool(days.get(day.isoformat())) or bool(had_visits)
    if len(through) < n_sources:
        return []
    everywhere = min(through.values())
    closed = set(doc.setdefault("closed", []))
    return [dt.date.fromisoformat(d) for d in sorted(days) if d <= everywhere and d not in closed]


def event_id(kind: str, hotspot_id: str, day: dt.date) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{kind}|{hotspot_id}|{day.isoformat()}"))


@dataclass(frozen=True)
class VisitMessage:
    visit_id: str
    hotspot_id: str
    start_ms: int
    end_ms: int

    @staticmethod
    def from_json(value: bytes) -> "VisitMessage":
        body = json.loads(value)
        return VisitMessage(body["visit_id"], body["hotspot_id"], _ms(body["start"]), _ms(body["end"]))


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class PresenceModel:
    """What stage 2 knows: hot spots, schedule, calendar, patrol length."""

    def __init__(self, hotspots: HotspotSet, schedule: Schedule | None, calendar: PolicingCalendar,
                 min_patrol_s: float) -> None:
        self.hotspots = hotspots
        self.schedule = schedule
        self.calendar = calendar
        self.min_patrol_s = min_patrol_s
        self._entries = schedule.by_key() if schedule else {}

    @property
    def schedule_entries(self) -> dict:
        """(policing day, hot spot id) -> ScheduleEntry."""
        return self._entries

    def scheduled_on(self, day: dt.date) -> bool:
        return any(d == day for d, _ in self._entries)

    def days_of(self, visit: VisitMessage) -> list[dt.date]:
        """Policing days a visit overlaps (split at the local day start)."""
        first = self.calendar.day_of_ms(visit.start_ms)
        last = self.calendar.day_of_ms(visit.end_ms)
        return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]

    def add_visit(self, state: bytes | None, visit: VisitMessage, day: dt.date) -> tuple[bytes, list[Event], bool]:
        """Fold a visit into a hot spot-day; the dosage event the first time the target is reached.

        Returns the new state, the events, and whether the visit was new to
        the hot spot-day (a visit re-sent after a crash is not).
        """
        doc = json.loads(state) if state else {"visits": {}, "dosage_met": False}
        new = visit.visit_id not in doc["visits"]
        doc["visits"][visit.visit_id] = [visit.start_ms, visit.end_ms]
        events: list[Event] = []
        entry = self._entries.get((day, visit.hotspot_id))
        if entry is not None and not doc["dosage_met"]:
            row = self.day_rows([(visit.hotspot_id, doc)], day)
            if bool(row["met"][0]):
                doc["dosage_met"] = True
                events.append(self._dosage_event(visit.hotspot_id, day, row, visit.end_ms))
        return json.dumps(doc, separators=(",", ":")).encode(), events, new

    def day_rows(self, docs: list[tuple[str, dict]], day: dt.date, also: list[str] = ()):
        """hot spot-day rows of ``day`` for the hot spots in ``docs`` (and ``also``, with no visits)."""
        idx, starts, ends = [], [], []
        for hotspot_id, doc in docs:
            h = self.hotspots.index_of(hotspot_id)
            for start, end in doc["visits"].values():
                idx.append(h)
                starts.append(start)
                ends.append(end)
        n = len(idx)
        visits = Visits(np.zeros(n, np.int64), np.asarray(idx, np.int64), np.asarray(starts, np.int64),
                        np.asarray(ends, np.int64), np.ones(n, np.int64))
        wanted = np.array([self.hotspots.index_of(h) for h, _ in docs] + [self.hotspots.index_of(h) for h in also],
                          dtype=np.int64)
        return hotspot_days_table(visits, self.hotspots, self.schedule, self.calendar, self.min_patrol_s,
                                  days=[day], hotspot_index=wanted)

    def close_day(self, docs: list[tuple[str, dict]], day: dt.date, owned: list[str]) -> tuple[Table, list[Event]]:
        """The day's rows and a ``hotspot.day_closed`` for every owned hot spot (the evaluation row)."""
        seen = {h for h, _ in docs}
        table = self.day_rows(docs, day, also=[h for h in owned if h not in seen])
        out = []
        end_text = rfc3339_utc(np.array([self.calendar.day_start_ms(day + dt.timedelta(days=1))]))[0]
        for i in range(len(table)):
            row = {name: _plain(col[i]) for name, col in table.columns.items()}
            hid = row["hotspot_id"]
            eid = event_id(DAY_CLOSED, hid, day)
            body = dict(row, event_id=eid)
            out.append((hid.encode(), json.dumps(body, separators=(",", ":")).encode(),
                        ce_headers(DAY_CLOSED, eid, end_text, hid)))
        return table, out

    def _dosage_event(self, hotspot_id: str, day: dt.date, row, at_ms: int) -> Event:
        eid = event_id(DOSAGE_MET, hotspot_id, day)
        body = {"event_id": eid, "policing_day": day.isoformat(), "hotspot_id": hotspot_id,
                "target_minutes": _plain(row["target_minutes"][0]),
                "window_presence_s": _plain(row["window_presence_s"][0])}
        at_text = rfc3339_utc(np.array([at_ms]))[0]  # the end of the visit that reached it
        return hotspot_id.encode(), json.dumps(body, separators=(",", ":")).encode(), \
            ce_headers(DOSAGE_MET, eid, at_text, hotspot_id)


def _plain(value):
    """numpy scalars to JSON-able Python values (NaN to None)."""
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if value != value else float(value)
    return value
