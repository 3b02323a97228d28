"""Stage 2 as pure code: hot spot-day presence, dosage and the day's close.

Stage 1 sends, per chunk of fixes it processed and per stage-2 partition,
one ``visit-batches`` message (:mod:`stream.visit_batches`): the visits it
closed for that partition's hot spots and its policing-day marks, in order,
tagged with its source partition. :class:`PartitionPresence` folds these into per hot spot-day
running figures: the merged intervals of presence (clipped to the day),
officer-ms, visits, patrols. The figures are incremental, so a visit costs
the same at the end of a busy day as at its start, and exact in integer
milliseconds, so a closed day's rows equal the replay's
:func:`stream.tables.hotspot_days_table` row for row.

A visit is applied once. After a restart stage 1 re-sends what it made
after its last complete checkpoint, with the same visit ids but not
necessarily in the same messages (its chunks depend on fetch timing). So
each source marks its checkpoints in the stream (a ``c`` item, sent when the
snapshot is taken, while it is still being written), and stage 2 keeps the
ids of the visits each source sent since its last two marks: a source
writes one checkpoint at a time, so the one before the last mark is
complete, and a visit re-sent after a restart is always among those ids.
State is small (open days and those ids); :mod:`stream.stage2_consumer`
snapshots it.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np

from geo.hotspots import HotspotSet
from stream.events import ce_headers
from stream.policing_day import PolicingCalendar
from stream.schedule import Schedule
from stream.tables import HOTSPOT_DAY_COLUMNS, Table, rfc3339_utc, uuid5_text
from stream.visit_batches import VisitBatch, check_items

_ONE_DAY = dt.timedelta(days=1)
DOSAGE_MET = "hotspot.dosage_met"
DAY_CLOSED = "hotspot.day_closed"

Event = tuple[bytes, bytes, list]  # key, value, headers


class RecentVisitIds:
    """The visits one source sent since its mark before last, by id.

    Ids are kept as the uuid's 16 bytes in sorted numpy arrays (16 bytes a
    visit; a set of Python strings took over a hundred), one for the
    interval since the last mark and one for the interval before it.
    """

    def __init__(self, older: np.ndarray | None = None, current: np.ndarray | None = None) -> None:
        self.older = _NO_IDS if older is None else older
        self.current = _NO_IDS if current is None else current

    def apply(self, items: list) -> list[bool]:
        """Per item, whether it is a visit sent before; records the new ones and moves on at each ``c``."""
        repeated = [False] * len(items)
        segment: list[int] = []
        for i, item in enumerate(items + [["c"]]):
            if item[0] == "v":
                segment.append(i)
            elif item[0] == "c":
                if segment:
                    keys = np.array([bytes.fromhex(items[j][1].replace("-", "")) for j in segment], "S16")
                    _, first = np.unique(keys, return_index=True)
                    again = np.isin(keys, self.older) | np.isin(keys, self.current)
                    again[np.setdiff1d(np.arange(keys.size), first)] = True  # twice in one message
                    for j, a in zip(segment, again.tolist()):
                        repeated[j] = a
                    self.current = np.union1d(self.current, keys[~again])
                    segment = []
                if i < len(items):
                    self.older, self.current = self.current, _NO_IDS
        return repeated

    def __len__(self) -> int:
        return int(self.older.size + self.current.size)

    def to_json(self) -> list[str]:
        return [base64.b64encode(a.tobytes()).decode() for a in (self.older, self.current)]

    @staticmethod
    def from_json(v: list[str]) -> "RecentVisitIds":
        return RecentVisitIds(*(np.frombuffer(base64.b64decode(t), "S16").copy() for t in v))


_NO_IDS = np.empty(0, "S16")


IDLE_THROUGH = "9999-12-31"  # what an idle source has closed: it holds no day open


def fold_mark(doc: dict, source: int, day: dt.date | None, had_visits: bool, n_sources: int) -> list[dt.date]:
    """Fold a cumulative mark into a partition's marks document (``day`` None: the source is idle).

    Returns the days that are now closed everywhere (every input partition
    has closed them, or is idle) and were not closed before, oldest first;
    the caller emits their rows and records them in ``doc["closed"]``.
    """
    through = doc.setdefault("through", {})
    key = str(source)
    days = doc.setdefault("days", {})
    if day is None:
        if key not in through:  # a source that has marked a day is not idle
            through[key] = IDLE_THROUGH
    else:
        if key not in through or through[key] < day.isoformat() or through[key] == IDLE_THROUGH:
            through[key] = day.isoformat()
        days[day.isoformat()] = bool(days.get(day.isoformat())) or bool(had_visits)
    if len(through) < n_sources:
        return []
    everywhere = min(through.values())
    closed = set(doc.setdefault("closed", []))
    return [dt.date.fromisoformat(d) for d in sorted(days) if d <= everywhere and d not in closed]


def event_id(kind: str, hotspot_id: str, day: dt.date) -> str:
    return uuid5_text(f"{kind}|{hotspot_id}|{day.isoformat()}")


class PresenceModel:
    """What stage 2 knows: hot spots, schedule, calendar, patrol length."""

    def __init__(self, hotspots: HotspotSet, schedule: Schedule | None, calendar: PolicingCalendar,
                 min_patrol_s: float) -> None:
        self.hotspots = hotspots
        self.schedule = schedule
        self.calendar = calendar
        self.min_patrol_s = min_patrol_s
        self._entries = schedule.by_key() if schedule else {}
        self._scheduled_days = {d for d, _ in self._entries}
        self._windows: dict = {}

    @property
    def schedule_entries(self) -> dict:
        """(policing day, hot spot id) -> ScheduleEntry."""
        return self._entries

    def scheduled_on(self, day: dt.date) -> bool:
        return day in self._scheduled_days

    def window(self, day: dt.date, hotspot_id: str) -> tuple[int, int, float] | None:
        """(start ms, end ms, target minutes) of a scheduled hot spot-day, else None."""
        key = (day, hotspot_id)
        if key not in self._windows:
            e = self._entries.get(key)
            self._windows[key] = None if e is None else (*self.calendar.window_ms(day, e.window_start, e.window_end),
                                                          float(e.target_minutes))
        return self._windows[key]

    def days_of(self, start_ms: int, end_ms: int) -> list[dt.date]:
        """Policing days a visit overlaps (split at the local day start), as the replay splits it."""
        first = self.calendar.day_of_ms(start_ms)
        last = self.calendar.day_of_ms(end_ms)
        return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


@dataclass
class HotspotDay:
    """Running figures of one hot spot-day (integer ms, exact)."""

    starts: list[int] = field(default_factory=list)  # merged presence intervals, clipped to the day
    ends: list[int] = field(default_factory=list)
    officer_ms: int = 0
    visits: int = 0
    patrols: int = 0
    dosage_met: bool = False

    def add(self, start: int, end: int) -> None:
        """Union ``[start, end]`` into the merged intervals."""
        i = bisect.bisect_left(self.ends, start)  # first interval that may touch
        j = bisect.bisect_right(self.starts, end)  # intervals i..j-1 overlap or touch
        if i < j:
            start = min(start, self.starts[i])
            end = max(end, self.ends[j - 1])
        self.starts[i:j] = [start]
        self.ends[i:j] = [end]

    def presence_ms(self) -> int:
        return sum(e - s for s, e in zip(self.starts, self.ends))

    def within_ms(self, lo: int, hi: int) -> int:
        return sum(max(0, min(e, hi) - max(s, lo)) for s, e in zip(self.starts, self.ends))

    def to_list(self) -> list:
        return [self.starts, self.ends, self.officer_ms, self.visits, self.patrols, self.dosage_met]

    @staticmethod
    def from_list(v: list) -> "HotspotDay":
        return HotspotDay(list(v[0]), list(v[1]), int(v[2]), int(v[3]), int(v[4]), bool(v[5]))


@dataclass
class Applied:
    """What applying a batch produced."""

    events: list[Event] = field(default_factory=list)
    visits: list[tuple[str, float]] = field(default_factory=list)  # (hotspot id, duration s), first application
    days_seen: set = field(default_factory=set)
    closed: list[tuple[dt.date, Table]] = field(default_factory=list)
    late_visits: int = 0  # visits for a day already closed here (not counted)
    skipped: int = 0  # visits re-sent after a stage-1 restart, applied before


class PartitionPresence:
    """Stage 2 state of one ``visit-batches`` partition: its hot spots' open days.

    Parameters
    ----------
    model : PresenceModel
    partition : int
        The stage-2 partition.
    owned : list[str]
        Hot spot ids whose key falls in this partition.
    n_sources : int
        Stage-1 (input) partitions; a day closes when all have marked it.
    """

    def __init__(self, model: PresenceModel, partition: int, owned: list[str], n_sources: int) -> None:
        self.model = model
        self.partition = partition
        self.owned = list(owned)
        self.n_sources = n_sources
        # Source partition -> ids of the visits it sent since its mark before last.
        self.since_checkpoint: dict[int, RecentVisitIds] = {}
        self.days: dict[tuple[str, str], HotspotDay] = {}  # (day iso, hotspot id)
        self.marks: dict = {}
        # The visit-batches offset of the last message folded in: a snapshot holds its input, and
        # what is read again after a restore (the committed offset can lag the snapshot) is skipped.
        self.applied_offset = -1

    def apply(self, batch: VisitBatch) -> Applied:
        check_items(batch.items)  # before anything changes: a message is applied whole or not at all
        out = Applied()
        recent = self.since_checkpoint.setdefault(batch.src, RecentVisitIds())
        repeated = recent.apply(batch.items)
        closed = set(self.marks.get("closed", ()))
        min_patrol_ms = self.model.min_patrol_s * 1000.0
        cal = self.model.calendar
        iso_of: dict[dt.date, str] = {}
        for item, again in zip(batch.items, repeated):
            if item[0] == "v":
                _, vid, hotspot_id, start, end = item
                if again:
                    out.skipped += 1  # re-sent after a stage-1 restart: applied already
                    continue
                first = cal.day_of_ms(start)
                first_end = cal.day_start_ms(first + _ONE_DAY)
                # Most visits lie within one policing day.
                days = (first,) if end < first_end else self.model.days_of(start, end)
                for k, day in enumerate(days):
                    iso = iso_of.get(day)
                    if iso is None:
                        iso = iso_of[day] = day.isoformat()
                    if iso in closed:
                        out.late_visits += 1
                        continue
                    out.days_seen.add(day)
                    hd = self.days.get((iso, hotspot_id))
                    if hd is None:
                        hd = self.days[(iso, hotspot_id)] = HotspotDay()
                    lo = max(start, cal.day_start_ms(day))
                    hi = min(end, first_end if k == 0 else cal.day_start_ms(day + _ONE_DAY))
                    hd.visits += 1
                    hd.officer_ms += max(hi - lo, 0)
                    if hi >= lo:
                        hd.add(lo, hi)
                    if k == 0:
                        is_patrol = (end - start) >= min_patrol_ms
                        hd.patrols += int(is_patrol)
                        out.visits.append((hotspot_id, (end - start) / 1000.0))
                    if not hd.dosage_met:
                        self._check_dosage(hd, day, hotspot_id, end, out)
            elif item[0] == "m":
                day = dt.date.fromisoformat(item[1])
                for closing in fold_mark(self.marks, batch.src, day, bool(item[2]), self.n_sources):
                    self._close(closing, out)
                    closed.add(closing.isoformat())
                    out.days_seen.add(closing)
            elif item[0] == "i":
                for closing in fold_mark(self.marks, batch.src, None, False, self.n_sources):
                    self._close(closing, out)
                    closed.add(closing.isoformat())
                    out.days_seen.add(closing)
            elif item[0] == "c":
                pass  # (RecentVisitIds.apply has moved the window on)
            else:
                raise ValueError(f"unknown visit-batches item {item[0]!r}")
        return out

    def _check_dosage(self, hd: HotspotDay, day: dt.date, hotspot_id: str, at_ms: int, out: Applied) -> None:
        window = self.model.window(day, hotspot_id)
        if window is None:
            return
        ws, we, target = window
        within = hd.within_ms(ws, we)
        if within >= target * 60_000.0:
            hd.dosage_met = True
            eid = event_id(DOSAGE_MET, hotspot_id, day)
            body = {"event_id": eid, "policing_day": day.isoformat(), "hotspot_id": hotspot_id,
                    "target_minutes": target, "window_presence_s": within / 1000.0}
            at_text = rfc3339_utc(np.array([at_ms]))[0]  # the end of the visit that reached it
            out.events.append((hotspot_id.encode(), json.dumps(body, separators=(",", ":")).encode(),
                               ce_headers(DOSAGE_MET, eid, at_text, hotspot_id)))

    def _close(self, day: dt.date, out: Applied) -> None:
        iso = day.isoformat()
        have = [h for h in self.owned if (iso, h) in self.days]
        # Rows for the days the replay has: scheduled days and days with visits.
        if have or self.marks["days"].get(iso) or self.model.scheduled_on(day):
            table = self.rows(day, self.owned)
            end_text = rfc3339_utc(np.array([self.model.calendar.day_start_ms(day + dt.timedelta(days=1))]))[0]
            for i in range(len(table)):
                row = {name: _plain(col[i]) for name, col in table.columns.items()}
                hid = row["hotspot_id"]
                eid = event_id(DAY_CLOSED, hid, day)
                out.events.append((hid.encode(), json.dumps(dict(row, event_id=eid), separators=(",", ":")).encode(),
                                   ce_headers(DAY_CLOSED, eid, end_text, hid)))
            out.closed.append((day, table))
        for h in have:
            del self.days[(iso, h)]  # the day is out: its state goes, so memory stays bounded
        self.marks["closed"] = (self.marks.get("closed", []) + [iso])[-366:]
        self.marks["days"].pop(iso, None)

    def rows(self, day: dt.date, hotspot_ids: list[str]) -> Table:
        """hot spot-day rows of ``day`` for ``hotspot_ids``, as :func:`hotspot_days_table` gives them."""
        model = self.model
        iso = day.isoformat()
        index = sorted(model.hotspots.index_of(h) for h in hotspot_ids)
        ids = [model.hotspots.ids[i] for i in index]
        n = len(ids)
        scheduled = np.zeros(n, bool)
        target = np.full(n, np.nan)
        presence = np.zeros(n, np.float64)
        officer = np.zeros(n, np.float64)
        visits = np.zeros(n, np.int64)
        patrols = np.zeros(n, np.int64)
        window = np.zeros(n, np.float64)
        for k, h in enumerate(ids):
            hd = self.days.get((iso, h))
            w = model.window(day, h)
            if w is not None:
                scheduled[k] = True
                target[k] = w[2]
            if hd is None:
                continue
            presence[k] = hd.presence_ms()
            officer[k] = hd.officer_ms
            visits[k] = hd.visits
            patrols[k] = hd.patrols
            if w is not None:
                window[k] = hd.within_ms(w[0], w[1])
        met = scheduled & (window >= np.nan_to_num(target) * 60_000.0)
        columns = {
            "policing_day": np.array([iso] * n, dtype=object),
            "hotspot_id": np.array(ids, dtype=object),
            "scheduled": scheduled,
            "target_minutes": target,
            "presence_s": presence / 1000.0,
            "officer_s": officer / 1000.0,
            "visits": visits,
            "patrols": patrols,
            "met": met,
            "window_presence_s": window / 1000.0,
        }
        return Table({name: columns[name] for name in HOTSPOT_DAY_COLUMNS})

    def open_days(self) -> set[dt.date]:
        return {dt.date.fromisoformat(d) for d, _ in self.days}

    def snapshot(self) -> bytes:
        return json.dumps({"partition": self.partition, "since_checkpoint": {str(k): v.to_json() for k, v in self.since_checkpoint.items()},
                           "days": [[d, h, hd.to_list()] for (d, h), hd in self.days.items()],
                           "marks": self.marks, "offset": self.applied_offset}, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        doc = json.loads(data)
        if int(doc["partition"]) != self.partition:
            raise ValueError(f"snapshot of partition {doc['partition']} restored into {self.partition}")
        self.since_checkpoint = {int(k): RecentVisitIds.from_json(v) for k, v in doc["since_checkpoint"].items()}
        self.days = {(d, h): HotspotDay.from_list(v) for d, h, v in doc["days"]}
        self.marks = doc["marks"]
        self.applied_offset = int(doc.get("offset", -1))


def _plain(value):
    """numpy scalars to JSON-able Python values (NaN to None)."""
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if value != value else float(value)
    return value
