"""A simulated policing day: officers walking between and dwelling in hot spots.

Officers walk at about 1.4 m/s between hot spots, stay 5-30 minutes at a
spot inside one (wandering a little), and their radios report every 5-60 s
with 5-30 m of error; some fixes are dropped, some duplicated, some arrive
late. Event time is simulated, so a day takes seconds. The true positions,
sampled every second with no noise, give the ground-truth visits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import shapely

from geo.hotspots import HotspotSet
from stream.policing_day import PolicingCalendar, parse_clock
from stream.schedule import Schedule

WALK_MPS = 1.4


def _as_range(name: str, value: float | tuple[float, float]) -> tuple[float, float]:
    """A ``(low, high)`` range from a range or a single fixed value."""
    lo, hi = (value, value) if np.isscalar(value) else value
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"{name} must be a number >= 0 or a range (low, high) with 0 <= low <= high, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class SimulationSettings:
    """What the simulated officers and their radios do; every draw is seeded by ``seed``.

    ``report_interval_s`` and ``error_m`` are ranges each radio draws its own
    value from; a single number (or a range with equal ends) fixes it for
    every radio, as the accuracy benchmark needs. Either way one value is
    drawn per radio, so a fixed value leaves every other draw of the seed as
    it was.
    """

    officers: int = 12
    seed: int = 7
    report_interval_s: float | tuple[float, float] = (5.0, 60.0)  # each radio draws its interval from this range
    error_m: float | tuple[float, float] = (5.0, 30.0)  # each radio's 1-sigma horizontal error
    drop_share: float = 0.05
    duplicate_share: float = 0.01
    late_share: float = 0.005  # delivered after a delay of 2-20 minutes
    stay_s: tuple[float, float] = (300.0, 1800.0)
    call_share: float = 0.6  # share of stays followed by a call elsewhere
    call_s: tuple[float, float] = (1200.0, 3600.0)
    shift_start: str = "14:00"
    shift_end: str = "00:00"

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ so callers always see ranges.
        object.__setattr__(self, "report_interval_s", _as_range("report_interval_s", self.report_interval_s))
        object.__setattr__(self, "error_m", _as_range("error_m", self.error_m))
        if self.report_interval_s[0] <= 0:
            raise ValueError("report_interval_s must be > 0")
        for name in ("drop_share", "duplicate_share", "late_share", "call_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class SimulatedFixes:
    """Fixes in delivery order, and the true path they were drawn from."""

    officer_id: np.ndarray  # object (n,)
    ts_ms: np.ndarray  # int64 event time
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray
    true_officer_id: np.ndarray  # noise-free path sampled every second
    true_ts_ms: np.ndarray
    true_lat: np.ndarray
    true_lon: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])


def _random_point_in(poly, rng: np.random.Generator) -> tuple[float, float]:
    x0, y0, x1, y1 = poly.bounds
    # Keep clear of the edge so the stay is inside even with a little wander.
    inner = poly.buffer(-min(15.0, 0.15 * min(x1 - x0, y1 - y0)))
    target = inner if not inner.is_empty else poly
    for _ in range(1000):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if target.contains(shapely.Point(x, y)):
            return x, y
    c = poly.representative_point()
    return c.x, c.y


def simulate_day(hotspots: HotspotSet, schedule: Schedule | None, day: dt.date,
                 settings: SimulationSettings = SimulationSettings(),
                 calendar: PolicingCalendar = PolicingCalendar()) -> SimulatedFixes:
    """Simulate one policing day of patrols (scheduled hot spots first)."""
    rng = np.random.default_rng(settings.seed)
    shift0, shift1 = calendar.window_ms(day, parse_clock(settings.shift_start), parse_clock(settings.shift_end))
    polys = list(hotspots.geometries_metric)
    scheduled = [hotspots.index_of(e.hotspot_id) for e in (schedule.entries if schedule else ())
                 if e.policing_day == day]
    others = [i for i in range(len(polys)) if i not in set(scheduled)]
    queue = list(rng.permutation(scheduled)) if scheduled else []
    out_cols: dict[str, list[np.ndarray]] = {k: [] for k in ("oid", "ts", "x", "y", "acc")}
    true_cols: dict[str, list[np.ndarray]] = {k: [] for k in ("oid", "ts", "x", "y")}
    for k in range(settings.officers):
        oid = f"officer-{k:04d}"
        # Waypoints: (time_s, x, y); walk between stays, stay still-ish inside.
        start = polys[int(rng.integers(len(polys)))].centroid
        t = shift0 / 1000.0 + rng.uniform(0, 1800)
        pts_t, pts_x, pts_y = [t], [start.x + rng.normal(0, 300)], [start.y + rng.normal(0, 300)]
        while t < shift1 / 1000.0:
            if queue and rng.random() < 0.7:
                h = int(queue.pop())
            else:
                h = int(rng.choice(others if others and rng.random() < 0.3 else range(len(polys))))
            x, y = _random_point_in(polys[h], rng)
            dist = float(np.hypot(x - pts_x[-1], y - pts_y[-1]))
            t += dist / (WALK_MPS * rng.uniform(0.8, 1.2))
            pts_t.append(t), pts_x.append(x), pts_y.append(y)
            stay = rng.uniform(*settings.stay_s)
            # Wander within a few metres during the stay.
            for _ in range(3):
                t += stay / 3
                pts_t.append(t), pts_x.append(x + rng.normal(0, 4)), pts_y.append(y + rng.normal(0, 4))
            if rng.random() < settings.call_share:
                # Called away: a job somewhere off the hot spots.
                x, y = pts_x[-1] + rng.normal(0, 1500), pts_y[-1] + rng.normal(0, 1500)
                t += float(np.hypot(x - pts_x[-1], y - pts_y[-1])) / (WALK_MPS * 3)  # driven
                pts_t.append(t), pts_x.append(x), pts_y.append(y)
                t += rng.uniform(*settings.call_s)
                pts_t.append(t), pts_x.append(x + rng.normal(0, 4)), pts_y.append(y + rng.normal(0, 4))
        pts = np.array([pts_t, pts_x, pts_y])
        end_t = min(pts[0, -1], shift1 / 1000.0)
        true_t = np.arange(pts[0, 0], end_t, 1.0)
        true_cols["oid"].append(np.full(true_t.size, oid, dtype=object))
        true_cols["ts"].append(np.round(true_t * 1000).astype(np.int64))
        true_cols["x"].append(np.interp(true_t, pts[0], pts[1]))
        true_cols["y"].append(np.interp(true_t, pts[0], pts[2]))
        interval = rng.uniform(*settings.report_interval_s)
        # Radios stamp whole seconds.
        rep_t = np.round(np.arange(pts[0, 0], end_t, interval) + rng.uniform(0, 1.0, size=1))
        rep_t = rep_t[rep_t < end_t]
        err = rng.uniform(*settings.error_m)
        rx = np.interp(rep_t, pts[0], pts[1]) + rng.normal(0, err, rep_t.size)
        ry = np.interp(rep_t, pts[0], pts[2]) + rng.normal(0, err, rep_t.size)
        keep = rng.random(rep_t.size) >= settings.drop_share
        rep_t, rx, ry = rep_t[keep], rx[keep], ry[keep]
        out_cols["oid"].append(np.full(rep_t.size, oid, dtype=object))
        out_cols["ts"].append(np.round(rep_t * 1000).astype(np.int64))
        out_cols["x"].append(rx)
        out_cols["y"].append(ry)
        out_cols["acc"].append(np.full(rep_t.size, round(err, 1)))
    oid = np.concatenate(out_cols["oid"])
    ts = np.concatenate(out_cols["ts"])
    x = np.concatenate(out_cols["x"])
    y = np.concatenate(out_cols["y"])
    acc = np.concatenate(out_cols["acc"])
    # Delivery order: by event time, then duplicates and late deliveries.
    deliver = ts.astype(np.float64)
    late = rng.random(ts.size) < settings.late_share
    deliver[late] += rng.uniform(120_000, 1_200_000, late.sum())
    dup = np.flatnonzero(rng.random(ts.size) < settings.duplicate_share)
    idx = np.concatenate([np.arange(ts.size), dup])
    deliver = np.concatenate([deliver, deliver[dup] + rng.uniform(0, 5000, dup.size)])
    order = idx[np.argsort(deliver, kind="stable")]
    lon, lat = hotspots.projection.to_wgs84(x[order], y[order])
    t_oid = np.concatenate(true_cols["oid"])
    t_lon, t_lat = hotspots.projection.to_wgs84(np.concatenate(true_cols["x"]), np.concatenate(true_cols["y"]))
    return SimulatedFixes(oid[order], ts[order], np.round(lat, 6), np.round(lon, 6), acc[order],
                          t_oid, np.concatenate(true_cols["ts"]), t_lat, t_lon)


def write_fixes_csv(sim: SimulatedFixes, path: str) -> None:
    """Write fixes as the replay's CSV (RFC 3339 UTC times)."""
    from stream.tables import rfc3339_utc

    ts_text = rfc3339_utc(sim.ts_ms)
    with open(path, "w") as fh:
        fh.write("officer_id,ts,lat,lon,accuracy_m\n")
        fh.writelines(f"{o},{t},{la:.6f},{lo:.6f},{a:g}\n"
                      for o, t, la, lo, a in zip(sim.officer_id, ts_text, sim.lat, sim.lon, sim.accuracy_m))


def write_fixes_jsonl(sim: SimulatedFixes, path: str) -> None:
    """Write fixes as JSON Lines, one message value per line (epoch ms times)."""
    from stream.producer import fix_json

    with open(path, "wb") as fh:
        fh.writelines(fix_json(str(o), int(t), la, lo, a) + b"\n"
                      for o, t, la, lo, a in zip(sim.officer_id, sim.ts_ms, sim.lat, sim.lon, sim.accuracy_m))
