"""Plain-Python replay: the whole pipeline one row at a time, obviously correct.

csv + datetime + float() for parsing, the reference orderer, shapely for
containment, the reference visit state machine, and per-day unions with
zoneinfo. The oracle for :func:`stream.replay.replay` on small files.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from zoneinfo import ZoneInfo

import pyproj

from tests.reference.locate import locate_reference
from tests.reference.ordering import ReferenceOrderer, to_ms
from tests.reference.stays import reference_stays
from tests.reference.presence import union_length_within
from tests.reference.report_interval import ReferenceIntervals
from tests.reference.visits import ReferenceVisits

TIME_MIN_MS = 946_684_800_000
TIME_MAX_MS = 4_102_444_800_000


def _parse_ts(text: str):
    text = text.strip()
    if text.lstrip("-").isdigit() and len(text.lstrip("-")) <= 15:
        return int(text)
    if len(text) < 20 or text[10] not in "Tt ":
        return None
    if text[-1] not in "Zz" and text[-6] not in "+-":
        return None  # an offset is required
    try:
        t = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return int((t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1))


def _parse_float(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def read_reference(path):
    """Rows as (line, officer_id, ts_ms, lat, lon) and rejects {line: reason}."""
    good, bad = [], {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        col = {name: header.index(name) for name in ("officer_id", "ts", "lat", "lon")}
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                bad[line] = "malformed"
                continue
            officer = row[col["officer_id"]].strip()
            ts_text, lat_text, lon_text = (row[col[c]].strip() for c in ("ts", "lat", "lon"))
            if not officer or not ts_text or not lat_text or not lon_text:
                bad[line] = "missing_field"
                continue
            ts = _parse_ts(ts_text)
            if ts is None:
                bad[line] = "bad_time"
                continue
            lat, lon = _parse_float(lat_text), _parse_float(lon_text)
            if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
                bad[line] = "bad_coordinates"
            elif abs(lat) > 90 or abs(lon) > 180:
                bad[line] = "coordinates_out_of_range"
            elif lat == 0 and lon == 0:
                bad[line] = "null_island"
            elif not TIME_MIN_MS <= ts < TIME_MAX_MS:
                bad[line] = "time_out_of_range"
            else:
                good.append((line, officer, ts, lat, lon))
    return good, bad


def adaptive_limits(rules, interval_ms: int) -> tuple[int, int]:
    """(gap limit, exit grace) in ms for an officer whose interval estimate is ``interval_ms``."""
    gap, grace = to_ms(rules.max_gap_s), to_ms(rules.exit_grace_s)
    if rules.scaling == "fixed":
        return gap, grace
    if interval_ms > 0:  # an unknown interval keeps the fixed grace
        grace = min(to_ms(rules.max_exit_grace_s), round(interval_ms * rules.exit_grace_intervals))
    return max(gap, round(interval_ms * rules.max_gap_intervals)), grace


def adaptive_margin(rules, accuracy_m: float | None) -> float:
    """The exit margin, metres, of a fix that states ``accuracy_m`` (None: states none)."""
    if rules.scaling == "fixed":
        return rules.exit_margin_m
    stated = rules.default_accuracy_m if accuracy_m is None else accuracy_m
    return min(stated * rules.exit_margin_accuracies, rules.max_exit_margin_m)


def stay_fixes(released, rules):
    """Each officer's fixes with those of a stay moved to its centroid (tests/reference/stays.py), in time
    order per officer as they were."""
    by_officer: dict[int, list] = {}
    for r in released:
        by_officer.setdefault(r[0], []).append(r)
    out = []
    for officer, rows in sorted(by_officer.items()):
        acc = rules.default_accuracy_m
        radius = rules.stay_radius_accuracies * acc
        fixes = [(ts, x, y, acc, radius if iv / 1000 * rules.walking_speed_mps >= radius else 0.0, gap, None, iv)
                 for _, ts, x, y, _, iv, gap, _ in rows]
        k = 0
        for ts, end, x, y, _, n, _, _, _ in reference_stays(fixes, rules.stay_min_fixes, rules.stay_max_misses):
            for r in rows[k:k + n]:
                out.append((officer, r[1], x, y) + r[4:])
            k += n
    return out


def replay_reference(path, hotspots, rules, schedule=None):
    """Visits, rejects and hot spot-day rows, computed the slow, plain way."""
    rows, rejects = read_reference(path)
    to_metric = pyproj.Transformer.from_crs("EPSG:4326", hotspots.crs, always_xy=True)
    orderer = ReferenceOrderer(rules.reorder_window_s, rules.max_speed_mps, rules.max_gap_s)
    codes: dict[str, int] = {}
    released = []
    for line, officer, ts, lat, lon in rows:
        code = codes.setdefault(officer, len(codes))
        x, y = to_metric.transform(lon, lat)
        rel, rej = orderer.push(code, ts, x, y, line)
        released += rel
        rejects.update({r: reason for r, reason in rej})
    rel, rej = orderer.flush()
    released += rel
    rejects.update({r: reason for r, reason in rej})

    intervals = ReferenceIntervals()
    last_ts: dict[int, int] = {}
    limits = []  # (interval, gap, grace) at each released fix
    for officer, ts, _, _, _ in released:
        iv = intervals.push(officer, last_ts.get(officer), ts)
        last_ts[officer] = ts
        limits.append((iv, *adaptive_limits(rules, iv)))
    released = [r + lim for r, lim in zip(released, limits)]
    if rules.scaling == "adaptive" and rules.stay_min_fixes > 0:
        released = stay_fixes(released, rules)

    # The files here state no accuracy: every fix gets the margin of the default accuracy.
    margin = adaptive_margin(rules, None)
    fix, hot, inside = locate_reference([r[2] for r in released], [r[3] for r in released],
                                        hotspots.geometries_metric, margin)
    pairs: dict[int, dict[int, bool]] = {}
    for f, h, i in zip(fix, hot, inside):
        pairs.setdefault(int(f), {})[int(h)] = bool(i)
    machine = ReferenceVisits(rules.max_gap_s, rules.exit_grace_s, rules.visit_bounds)
    visits = []
    for k, (officer, ts, _, _, _, _, gap_ms, grace_ms) in enumerate(released):
        visits += machine.fix(officer, ts, pairs.get(k, {}), gap_ms=gap_ms, grace_ms=grace_ms)
    visits += machine.close_all({o: adaptive_limits(rules, intervals.estimate(o))[0] for o in last_ts})
    names = {c: o for o, c in codes.items()}
    visits = sorted((names[o], hotspots.ids[h], s, e, n) for o, h, s, e, n in visits)
    return visits, rejects, hotspot_days_reference(visits, hotspots, rules, schedule)


def hotspot_days_reference(visits, hotspots, rules, schedule):
    """{(day iso, hotspot id): (presence_ms, officer_ms, visits, patrols, window_ms)}."""
    zone = ZoneInfo(rules.timezone)
    start_clock = dt.time.fromisoformat(rules.day_start)

    def day_start(day: dt.date) -> int:
        return int(dt.datetime.combine(day, start_clock, tzinfo=zone).timestamp() * 1000)

    def day_of(ms: int) -> dt.date:
        local = dt.datetime.fromtimestamp(ms / 1000, tz=zone)
        return local.date() if local.time() >= start_clock else local.date() - dt.timedelta(days=1)

    out = {}
    if not visits:
        return out
    first = min(day_of(v[2]) for v in visits)
    last = max(day_of(v[3]) for v in visits)
    day = first
    while day <= last:
        a, b = day_start(day), day_start(day + dt.timedelta(days=1))
        rows = {}
        for hid in hotspots.ids:
            mine = [v for v in visits if v[1] == hid and v[2] < b and v[3] >= a]
            presence = union_length_within([(v[2], v[3]) for v in mine], a, b)
            officer = sum(max(0, min(v[3], b) - max(v[2], a)) for v in mine)
            # A patrol counts on the day it started.
            patrols = sum(1 for v in mine if v[3] - v[2] >= rules.min_patrol_s * 1000 and a <= v[2] < b)
            rows[(day.isoformat(), hid)] = (presence, officer, len(mine), patrols, bool(mine))
        # Only days with a visit appear (no schedule here).
        if any(r[4] for r in rows.values()):
            out.update({k: r[:4] for k, r in rows.items()})
        day += dt.timedelta(days=1)
    return out
