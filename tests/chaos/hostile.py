"""Hostile input: records a gateway, a broken radio or an attacker could put on ``location-fixes``.

:func:`mix_hostile` plants a seeded corpus of bad records into a good stream
of fixes (its ``(key, value)`` records in delivery order) and says, for each
planted record, its category; :data:`CATEGORY_REASONS` says which dead-letter
reasons each category may get. Records that refer to an officer (repeats,
late fixes, teleports, swapped coordinates) go right after one of that
officer's good fixes and are made so that the good fixes are judged exactly
as without them: the good output must equal a clean run's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

WEEK_MS = 7 * 86_400_000
GPS_ROLLOVER_MS = 1024 * WEEK_MS  # a receiver with an old week counter reports a time this far back

CATEGORY_REASONS = {
    "malformed_json": {"malformed", "missing_field"},
    "truncated": {"malformed"},
    "oversized": {"oversized"},
    "wrong_type": {"malformed", "missing_field", "bad_time", "bad_coordinates", "bad_accuracy"},
    "not_finite": {"malformed", "bad_coordinates", "bad_accuracy"},
    "duplicate_field": {"duplicate_field"},
    "null_island": {"null_island"},
    "out_of_range": {"coordinates_out_of_range", "bad_accuracy"},
    "gps_week_rollover": {"time_out_of_range"},
    "far_future": {"time_out_of_range"},
    # Made from a good fix: if that fix came in late itself (released at once), so does its copy.
    "swapped_lat_lon": {"impossible_speed", "outside_crs", "late"},
    "teleport": {"impossible_speed", "outside_crs", "late"},
    "repeated": {"duplicate", "late"},
    "very_late": {"late"},
}
# Made from one of an officer's good fixes and sent right after it.
OFFICER_CATEGORIES = ("swapped_lat_lon", "teleport", "repeated", "very_late")

# Far from Nottingham and Lancashire (over 100 km from both), inside Great Britain: a teleport there is
# still projectable, so only the speed rule can catch it.
_FAR_PLACES = [(55.953, -3.189), (51.481, -3.179), (50.371, -4.143), (52.630, 1.297), (57.149, -2.094),
               (51.507, -0.128), (50.822, -0.137)]


@dataclass
class Fix:
    officer_id: str
    ts: int
    lat: float
    lon: float
    accuracy_m: float | None


@dataclass
class Planted:
    key: bytes | None
    value: bytes
    category: str


def good_day(hotspots, day, officers: int, seed: int) -> list[tuple[bytes, bytes]]:
    """A simulated policing day as ``(officer key, fix)`` records in delivery order."""
    from stream.producer import fix_json
    from stream.simulate import SimulationSettings, simulate_day

    sim = simulate_day(hotspots, None, day, SimulationSettings(officers=officers, seed=seed))
    return [(str(o).encode(), fix_json(str(o), int(t), la, lo, a))
            for o, t, la, lo, a in zip(sim.officer_id, sim.ts_ms, sim.lat, sim.lon, sim.accuracy_m)]


def _fix(value: bytes) -> Fix | None:
    try:
        d = json.loads(value)
        return Fix(str(d["officer_id"]), int(d["ts"]), float(d["lat"]), float(d["lon"]), d.get("accuracy_m"))
    except (ValueError, KeyError, TypeError):
        return None


def _json(d: dict) -> bytes:
    return json.dumps(d, separators=(",", ":")).encode()


def _fields(f: Fix) -> dict:
    d = {"officer_id": f.officer_id, "ts": f.ts, "lat": f.lat, "lon": f.lon}
    if f.accuracy_m is not None:
        d["accuracy_m"] = f.accuracy_m
    return d


class _Maker:
    """One hostile record of a category from a good fix (``f``, its record ``value``)."""

    def __init__(self, rng: np.random.Generator, now_ms: int) -> None:
        self.rng = rng
        self.now_ms = now_ms

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def malformed_json(self, f: Fix, value: bytes) -> bytes:
        r = self.rng
        return self.pick([
            lambda: bytes(r.integers(0, 256, int(r.integers(1, 200)), dtype=np.uint8)),
            lambda: value.replace(b":", b"=", 1),
            lambda: value[:-1] + b",}",
            lambda: b"[" + value + b"]",
            lambda: value + value,
            lambda: b"{" + value,
            lambda: value.replace(b'"', b"'"),
            lambda: b"null",
            lambda: b"{}",
            lambda: str(int(r.integers(-10**9, 10**9))).encode(),
            lambda: b'"' + value.replace(b'"', b'\\"') + b'"',
            lambda: value[:5] + b"\xff\xfe" + value[5:],
            lambda: b"",
        ])()

    def truncated(self, f: Fix, value: bytes) -> bytes:
        return value[:int(self.rng.integers(0, len(value)))]

    def oversized(self, f: Fix, value: bytes) -> bytes:
        size = int(np.exp(self.rng.uniform(np.log(4200), np.log(300_000))))
        return value[:-1] + b',"pad":"' + b"x" * size + b'"}'

    def wrong_type(self, f: Fix, value: bytes) -> bytes:
        d = _fields(f)
        field = self.pick(["officer_id", "ts", "lat", "lon", "accuracy_m"])
        wrong = {"officer_id": [True, [], {}, None, 1.5, ["a"]],
                 "accuracy_m": [True, False, [], {}, "high", ""]}  # null accuracy is no accuracy: valid
        d[field] = self.pick(wrong.get(field, [True, False, [], {}, [1, 2], {"v": 1}, "north", "", None]))
        return _json(d)

    def not_finite(self, f: Fix, value: bytes) -> bytes:
        field = self.pick(["lat", "lon", "accuracy_m"])
        d = _fields(f)
        d[field] = 0.0
        spelled = self.pick([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b'"NaN"', b'"Infinity"',
                             b'"-inf"', b'"nan"'])
        return _json(d).replace(f'"{field}":0.0'.encode(), f'"{field}":'.encode() + spelled)

    def duplicate_field(self, f: Fix, value: bytes) -> bytes:
        field = self.pick(["officer_id", "ts", "lat", "lon", "accuracy_m"])
        other = {"officer_id": f.officer_id + "-x", "ts": f.ts + 1000, "lat": f.lat + 0.01, "lon": f.lon + 0.01,
                 "accuracy_m": 7.0}[field]
        return value[:-1] + f',"{field}":{json.dumps(other)}}}'.encode()

    def null_island(self, f: Fix, value: bytes) -> bytes:
        return _json(dict(_fields(f), lat=0.0, lon=0.0))

    def out_of_range(self, f: Fix, value: bytes) -> bytes:
        sign = self.pick([-1, 1])
        return self.pick([
            lambda: _json(dict(_fields(f), lat=sign * float(self.rng.uniform(90.001, 1e4)))),
            lambda: _json(dict(_fields(f), lon=sign * float(self.rng.uniform(180.001, 1e4)))),
            lambda: _json(dict(_fields(f), accuracy_m=-float(self.rng.uniform(0.001, 1e3)))),
        ])()

    def gps_week_rollover(self, f: Fix, value: bytes) -> bytes:
        ts = f.ts - GPS_ROLLOVER_MS
        if self.rng.random() < 0.5:
            return _json(dict(_fields(f), ts=ts))
        return _json(dict(_fields(f), ts=np.datetime_as_string(np.datetime64(ts, "ms"), unit="ms") + "Z"))

    def far_future(self, f: Fix, value: bytes) -> bytes:
        ts = self.now_ms + int(np.exp(self.rng.uniform(np.log(3_600_000), np.log(20 * 365 * 86_400_000))))
        return _json(dict(_fields(f), ts=ts))

    # -- made from an officer's good fix, sent right after it -------------------------

    def swapped_lat_lon(self, f: Fix, value: bytes) -> bytes:
        return _json(dict(_fields(f), ts=f.ts + 2, lat=f.lon, lon=f.lat))

    def teleport(self, f: Fix, value: bytes) -> bytes:
        lat, lon = self.pick(_FAR_PLACES)
        return _json(dict(_fields(f), ts=f.ts + 1, lat=lat + float(self.rng.uniform(-0.05, 0.05)),
                          lon=lon + float(self.rng.uniform(-0.05, 0.05))))

    def repeated(self, f: Fix, value: bytes) -> bytes:
        return value  # the same record again (a gateway's retry)


def _key(rng: np.random.Generator, officer_key: bytes | None) -> bytes | None:
    """Mostly the officer's key (the partition its fixes are in); sometimes none, or a junk one."""
    u = rng.random()
    if u < 0.8:
        return officer_key
    if u < 0.9:
        return None
    if u < 0.98:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8))
    return b"k" * int(rng.integers(1100, 3000))  # longer than a dead letter keeps


def mix_hostile(good: list[tuple[bytes, bytes]], n_hostile: int, seed: int, now_ms: int,
                avoid_officers: set[str] = frozenset()) -> tuple[list[tuple[bytes | None, bytes]], list[str | None]]:
    """``good`` with ``n_hostile`` hostile records planted; returns the records in delivery order and, for
    each, its category (None for a good record).

    Officer categories are planted only after an officer's tenth fix, at most one a fix, with four good
    fixes between two teleport-like ones of an officer (so no run of rejected fixes re-anchors the speed
    rule), and never for ``avoid_officers`` (officers whose own fixes the speed rule rejects in a clean
    run, where a planted rejection could change which of them re-anchor)."""
    rng = np.random.default_rng(seed)
    make = _Maker(rng, now_ms)
    fixes = [_fix(v) for _, v in good]
    n_by_officer: dict[str, int] = defaultdict(int)
    position = []  # each good record's place among its officer's fixes
    for f in fixes:
        position.append(n_by_officer[f.officer_id] if f else -1)
        if f:
            n_by_officer[f.officer_id] += 1
    history: dict[str, list[int]] = defaultdict(list)  # good record indexes of each officer, in order
    for i, f in enumerate(fixes):
        if f:
            history[f.officer_id].append(i)
    categories = list(CATEGORY_REASONS)
    after: dict[int, list[Planted]] = defaultdict(list)
    last_planted: dict[str, int] = {}
    planted = 0
    attempts = 0
    while planted < n_hostile:
        attempts += 1
        if attempts > 50 * n_hostile:
            raise ValueError(f"only {planted} of {n_hostile} hostile records fit this stream")
        category = categories[planted % len(categories)]
        i = int(rng.integers(len(good)))
        f = fixes[i]
        if f is None:
            continue
        key = good[i][0]
        if category in OFFICER_CATEGORIES:
            pos = position[i]
            if (pos < 10 or f.officer_id in avoid_officers or any(p.category in OFFICER_CATEGORIES for p in after[i])
                    or pos + 1 >= n_by_officer[f.officer_id]):
                continue
            nxt = fixes[history[f.officer_id][pos + 1]]
            if nxt.ts - f.ts <= 5:  # room for the +1 / +2 ms of a teleport or swapped fix
                continue
            if category in ("teleport", "swapped_lat_lon"):
                if abs(pos - last_planted.get(f.officer_id, -100)) < 5:
                    continue
                last_planted[f.officer_id] = pos
            if category == "very_late":
                # A time before a fix of the officer at least three minutes (three reorder windows) older.
                older = [fixes[k].ts for k in history[f.officer_id][:pos] if f.ts - fixes[k].ts >= 180_000]
                if not older:
                    continue
                value = _json(dict(_fields(f), ts=older[-1] - 1_000))
            else:
                value = getattr(make, category)(f, good[i][1])
        else:
            value = getattr(make, category)(f, good[i][1])
            key = _key(rng, key)
        after[i].append(Planted(key, value, category))
        planted += 1
    records: list[tuple[bytes | None, bytes]] = []
    kinds: list[str | None] = []
    for i, (key, value) in enumerate(good):
        records.append((key, value))
        kinds.append(None)
        for p in after.get(i, ()):
            records.append((p.key, p.value))
            kinds.append(p.category)
    return records, kinds
