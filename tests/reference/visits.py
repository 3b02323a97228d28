"""Obviously-correct visit state machine: a dict of (officer, hotspot) -> open
visit, one fix at a time. The oracle for :func:`kernels.visits.advance_visits`,
plus a box locator for tests and the invariants as named predicates.
"""

from __future__ import annotations

import numpy as np

from tests.reference.ordering import to_ms


class ReferenceVisits:
    """``fix(officer, ts, pairs)`` with ``pairs`` a dict hotspot -> inside
    returns the visits it closed as ``(officer, hotspot, start, end, n_fixes)``.

    With ``bounds="midpoint"`` a visit starts halfway back to the officer's
    previous fix and ends halfway on to the fix after its last inside fix,
    when that fix is no more than ``max_gap_s`` away.
    """

    def __init__(self, max_gap_s: float, exit_grace_s: float, bounds: str = "fixes"):
        self.max_gap_ms = to_ms(max_gap_s)
        self.grace_ms = to_ms(exit_grace_s)
        self.midpoint = {"fixes": False, "midpoint": True}[bounds]
        self.open: dict[tuple[int, int], dict] = {}
        self.prev_ts: dict[int, int] = {}  # officer -> ts of the last fix fed

    def _midway(self, a: int, b: int | None, gap_ms: int) -> int:
        if self.midpoint and b is not None and abs(b - a) <= gap_ms:
            return a + (b - a) // 2
        return a

    def _close(self, key, next_ts: int | None, gap_ms: int) -> tuple:
        v = self.open.pop(key)
        after = v["after_in"] if v["after_in"] is not None else next_ts
        return (key[0], key[1], v["start"], self._midway(v["last_in"], after, gap_ms), v["n"])

    def fix(self, officer: int, ts: int, pairs: dict[int, bool], gap_ms: int | None = None,
            grace_ms: int | None = None) -> list[tuple]:
        """One fix; ``gap_ms`` and ``grace_ms``, when given, are the thresholds at this fix (adaptive rules)."""
        gap = self.max_gap_ms if gap_ms is None else gap_ms
        grace = self.grace_ms if grace_ms is None else grace_ms
        closed = []
        prev = self.prev_ts.get(officer)
        self.prev_ts[officer] = ts
        mine = sorted(k for k in self.open if k[0] == officer)
        for key in mine:  # gap: silence is not presence
            if ts - self.open[key]["last_seen"] > gap:
                closed.append(self._close(key, ts, gap))
        for key in mine:
            if key not in self.open:
                continue
            v = self.open[key]
            v["last_seen"] = ts
            if key[1] in pairs:  # within the buffer
                if v["out_since"] is not None and ts - v["out_since"] >= grace:
                    # Back after an excursion of the grace or more: the visit
                    # ended; a fix inside opens a new one below.
                    closed.append(self._close(key, ts, gap))
                    continue
                v["out_since"] = None
                if pairs[key[1]]:
                    v["last_in"] = ts
                    v["after_in"] = None
                    v["n"] += 1
                elif v["after_in"] is None:
                    v["after_in"] = ts
            else:
                if v["out_since"] is None:
                    v["out_since"] = ts
                if ts - v["out_since"] >= grace:
                    closed.append(self._close(key, ts, gap))
                elif v["after_in"] is None:
                    v["after_in"] = ts
        for hotspot, inside in sorted(pairs.items()):
            if inside and (officer, hotspot) not in self.open:
                self.open[(officer, hotspot)] = dict(
                    start=self._midway(ts, prev, gap), last_in=ts, last_seen=ts, out_since=None, after_in=None, n=1
                )
        return closed

    def close_all(self, gap_ms_of: dict[int, int] | None = None) -> list[tuple]:
        """Close every open visit; ``gap_ms_of``: each officer's gap limit now (default the fixed one)."""
        return [self._close(k, None, (gap_ms_of or {}).get(k[0], self.max_gap_ms)) for k in sorted(self.open)]

    def open_rows(self) -> list[tuple]:
        """Open visits as (officer, hotspot, start, last_in, last_seen,
        out_since or None, after_in or None, n), sorted by (officer, hotspot)."""
        return [
            (k[0], k[1], v["start"], v["last_in"], v["last_seen"], v["out_since"], v["after_in"], v["n"])
            for k, v in sorted(self.open.items())
        ]


def reference_visits(fix_officer, fix_ts_ms, pair_fix, pair_hotspot, pair_inside, *,
                     max_gap_s, exit_grace_s, close=True, bounds="fixes"):
    """Run whole arrays through a fresh :class:`ReferenceVisits`; returns the
    sorted closed visits (and the open ones, closed, when ``close``)."""
    ref = ReferenceVisits(max_gap_s, exit_grace_s, bounds)
    pairs: dict[int, dict[int, bool]] = {}
    for f, h, inside in zip(pair_fix, pair_hotspot, pair_inside):
        pairs.setdefault(int(f), {})[int(h)] = bool(inside)
    closed = []
    for i, (o, t) in enumerate(zip(fix_officer, fix_ts_ms)):
        closed += ref.fix(int(o), int(t), pairs.get(i, {}))
    if close:
        closed += ref.close_all()
    return sorted(closed)


def locate_boxes(x_m, y_m, boxes, exit_margin_m):
    """Test stand-in for the locate stage: hot spots are axis-aligned boxes
    ``(xmin, ymin, xmax, ymax)`` (closed); the buffer is the box grown by the
    margin on every side.

    Returns
    -------
    pair_fix : int64 (m,) ; pair_hotspot : int64 (m,) ; pair_inside : bool (m,),
    sorted by (pair_fix, pair_hotspot).
    """
    x = np.asarray(x_m, np.float64)[:, None]
    y = np.asarray(y_m, np.float64)[:, None]
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    m = float(exit_margin_m)

    def within(grow):
        return (x >= b[:, 0] - grow) & (x <= b[:, 2] + grow) & (y >= b[:, 1] - grow) & (y <= b[:, 3] + grow)

    inside = within(0.0)
    pair_fix, pair_hotspot = np.nonzero(within(m) | inside)  # row-major: sorted
    return pair_fix.astype(np.int64), pair_hotspot.astype(np.int64), inside[pair_fix, pair_hotspot]


# Invariants, as predicates over closed visits (Visits-like, or tuples).


def _columns(visits):
    if hasattr(visits, "start_ms"):
        return (np.asarray(visits.officer), np.asarray(visits.hotspot), np.asarray(visits.start_ms),
                np.asarray(visits.end_ms), np.asarray(visits.n_fixes))
    cols = list(zip(*visits)) or [(), (), (), (), ()]
    return tuple(np.asarray(c, np.int64) for c in cols)


def dwell_is_non_negative(visits) -> bool:
    """Every visit ends no earlier than it starts."""
    _, _, start, end, _ = _columns(visits)
    return bool(np.all(end >= start))


def visits_within_track_span(visits, fix_officer, fix_ts_ms) -> bool:
    """Every visit lies within its officer's first and last fix."""
    officer, _, start, end, _ = _columns(visits)
    fo = np.asarray(fix_officer)
    ft = np.asarray(fix_ts_ms)
    for o, s, e in zip(officer, start, end):
        ts = ft[fo == o]
        if ts.size == 0 or s < ts.min() or e > ts.max():
            return False
    return True


def no_visit_without_entry(visits, pair_fix, pair_hotspot, pair_inside, fix_officer) -> bool:
    """Only an (officer, hot spot) with an inside-polygon fix has a visit."""
    officer, hotspot, *_ = _columns(visits)
    pf = np.asarray(pair_fix)[np.asarray(pair_inside, bool)]
    ph = np.asarray(pair_hotspot)[np.asarray(pair_inside, bool)]
    entered = set(zip(np.asarray(fix_officer)[pf].tolist(), ph.tolist()))
    return all((o, h) in entered for o, h in zip(officer.tolist(), hotspot.tolist()))


def visits_have_fixes(visits) -> bool:
    """Every visit counts at least one inside fix."""
    return bool(np.all(_columns(visits)[4] >= 1))
