"""The control room's view of the current policing day, as stage 2 knows it.

Stage 2 owns hot spots (by partition) and folds their visits into hot
spot-days; the board turns that into one row per owned hot spot for the
*current* policing day: scheduled, target, window, presence so far, patrols,
met. The metrics endpoint exports it, and nothing else reads it.

Which day is current: the latest policing day stage 2 has seen a visit of or
closed, and, when event time is real time (time checks on), the wall clock's
policing day. With simulated time the wall clock says nothing about the day,
so a closed simulated day stays on the board with its final figures until a
later day begins. A closed day's rows are kept in memory (stage 2 drops a
day's state once its summary is out); after a restart the closed day's figures
are in its ``hotspot.day_closed`` events, and the board starts on the next
day.

Built in the event loop (:meth:`TodayBoard.refresh`), read by scrapes from
another thread: a refresh swaps in a new immutable :class:`BoardSnapshot`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from stream.tables import Table


@dataclass(frozen=True)
class BoardSnapshot:
    """One row per owned hot spot for ``day`` (arrays of equal length)."""

    day: dt.date | None
    day_start_s: float
    day_end_s: float
    hotspot_id: np.ndarray  # object (str)
    scheduled: np.ndarray  # bool
    met: np.ndarray  # bool
    target_s: np.ndarray  # float, NaN when not scheduled
    window_start_s: np.ndarray  # float epoch seconds, NaN when not scheduled
    window_end_s: np.ndarray
    presence_s: np.ndarray
    window_presence_s: np.ndarray
    officer_s: np.ndarray
    visits: np.ndarray  # int
    patrols: np.ndarray  # int

    @staticmethod
    def empty() -> "BoardSnapshot":
        e = np.empty(0)
        return BoardSnapshot(None, float("nan"), float("nan"), np.empty(0, object), e.astype(bool), e.astype(bool), e, e, e, e, e, e,
                             e.astype(np.int64), e.astype(np.int64))

    def __len__(self) -> int:
        return len(self.hotspot_id)


@dataclass
class TodayBoard:
    """Tracks the current day and the closed days' rows; makes snapshots.

    Parameters
    ----------
    model : stream.stage2.PresenceModel
        Hot spots, schedule, calendar and patrol length.
    wall_clock_days : bool
        Let the wall clock move the current day on (real-time event times).
    keep_closed_days : int
        Closed days whose rows are kept (the current one and the one before).
    """

    model: object
    wall_clock_days: bool = True
    keep_closed_days: int = 2
    current_day: dt.date | None = None
    closed_rows: dict[dt.date, Table] = field(default_factory=dict)
    snapshot: BoardSnapshot = field(default_factory=BoardSnapshot.empty)

    def saw_day(self, day: dt.date) -> None:
        """A visit of ``day`` or its close reached stage 2."""
        if self.current_day is None or day > self.current_day:
            self.current_day = day

    def day_closed(self, day: dt.date, rows: Table) -> None:
        """The final rows of a closed day (the ``hotspot.day_closed`` events' bodies)."""
        self.saw_day(day)
        kept = self.closed_rows.get(day)
        self.closed_rows[day] = rows if kept is None else _concat_rows(kept, rows)
        for old in sorted(self.closed_rows)[:-self.keep_closed_days]:
            del self.closed_rows[old]

    def refresh(self, owned: list[str], rows_for, now_ms: int) -> BoardSnapshot:
        """Rebuild the snapshot for the owned hot spots.

        ``rows_for(day)`` gives the live hot spot-day rows of the owned hot
        spots (:meth:`stream.presence_runtime.PresenceRuntime.rows`), or None.
        """
        model = self.model
        if self.wall_clock_days:
            self.saw_day(model.calendar.day_of_ms(now_ms))
        day = self.current_day
        if day is None or not owned:
            self.snapshot = BoardSnapshot.empty()
            return self.snapshot
        closed = self.closed_rows.get(day)
        live = rows_for(day)
        if live is None:
            self.snapshot = BoardSnapshot.empty()
            return self.snapshot
        if closed is not None:
            # Closed hot spots keep their final row; the rest (not closed yet
            # on this partition) are live.
            mine = set(owned)
            final = {h: i for i, h in enumerate(closed["hotspot_id"]) if h in mine}
            keep = np.array([h not in final for h in live["hotspot_id"]], bool)
            live = _concat_rows(_take(live, keep), _take(closed, np.array(sorted(final.values()), np.int64)))
        self.snapshot = self._snapshot(day, live)
        return self.snapshot

    def _snapshot(self, day: dt.date, rows: Table) -> BoardSnapshot:
        model = self.model
        ids = np.asarray(rows["hotspot_id"], dtype=object)
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        col = {name: np.asarray(rows[name])[order] for name in rows.columns}
        n = len(ids)
        win_start = np.full(n, np.nan)
        win_end = np.full(n, np.nan)
        entries = model.schedule_entries
        for i, h in enumerate(ids):
            e = entries.get((day, h))
            if e is not None:
                a, b = model.calendar.window_ms(day, e.window_start, e.window_end)
                win_start[i], win_end[i] = a / 1000.0, b / 1000.0
        scheduled = col["scheduled"].astype(bool)
        return BoardSnapshot(
            day=day, day_start_s=model.calendar.day_start_ms(day) / 1000.0,
            day_end_s=model.calendar.day_start_ms(day + dt.timedelta(days=1)) / 1000.0, hotspot_id=ids,
            scheduled=scheduled, met=col["met"].astype(bool),
            target_s=np.where(scheduled, col["target_minutes"].astype(float) * 60.0, np.nan),
            window_start_s=win_start, window_end_s=win_end,
            presence_s=col["presence_s"].astype(float), window_presence_s=col["window_presence_s"].astype(float),
            officer_s=col["officer_s"].astype(float), visits=col["visits"].astype(np.int64),
            patrols=col["patrols"].astype(np.int64))


def _take(rows: Table, index: np.ndarray) -> Table:
    return Table({name: np.asarray(c)[index] for name, c in rows.columns.items()})


def _concat_rows(a: Table, b: Table) -> Table:
    return Table({name: np.concatenate([np.asarray(a[name]), np.asarray(b[name])]) for name in a.columns})
