"""Replay == the plain-Python reference, on generated tracks with every kind of trouble.

Tracks cross overlapping and MultiPolygon hot spots with boundary jitter,
gaps, duplicates, out-of-order and late fixes, teleports and bad rows, and
run across midnight, the 06:00 policing-day boundary and both clock changes.
"""

import datetime as dt

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.hotspots import HotspotSet
from geo.projection import MetricProjection
from stream.engine import RuleSettings
from stream.replay import ReadOptions, replay
from tests.reference.replay import replay_reference

CENTRE = (457_000.0, 340_000.0)  # Nottingham, EPSG:27700

# Interesting starts: spring forward, fall back, just before 06:00 GMT and
# BST, and before midnight.
STARTS = [
    dt.datetime(2024, 3, 31, 0, 20, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 10, 27, 0, 10, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 1, 10, 5, 40, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 6, 1, 4, 35, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 6, 1, 22, 30, tzinfo=dt.timezone.utc),
]


def _square(cx, cy, half):
    return shapely.box(cx - half, cy - half, cx + half, cy + half)


def test_hotspots() -> HotspotSet:
    """Overlapping squares, a MultiPolygon and a polygon with a hole, 100-300 m."""
    x, y = CENTRE
    shapes = {
        "A": _square(x, y, 75),
        "B": _square(x + 100, y, 75),  # overlaps A by 50 m
        "C": shapely.MultiPolygon([_square(x - 250, y + 200, 50), _square(x - 100, y + 250, 40)]),
        "D": _square(x + 50, y - 250, 120).difference(_square(x + 50, y - 250, 40)),
    }
    proj = MetricProjection("EPSG:27700")
    features = []
    for hid, geom in shapes.items():
        def to_wgs(ring):
            c = np.asarray(ring.coords)
            lon, lat = proj.to_wgs84(c[:, 0], c[:, 1])
            out = np.column_stack([lon, lat])
            out[-1] = out[0]
            return out.tolist()

        polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
        coords = [[to_wgs(p.exterior)] + [to_wgs(h) for h in p.interiors] for p in polys]
        features.append({"type": "Feature", "id": hid, "properties": {"group": "north" if hid < "C" else "south"},
                         "geometry": {"type": "MultiPolygon", "coordinates": coords} if len(coords) > 1
                         else {"type": "Polygon", "coordinates": coords[0]}})
    return HotspotSet.from_geojson_dict({"type": "FeatureCollection", "features": features}, source="test")


test_hotspots.__test__ = False  # a factory, not a test


def write_trouble_csv(path, seed: int, start: dt.datetime, n_officers: int, n_fixes: int,
                      max_interval_s: float) -> None:
    """Random walks around the hot spots with every kind of bad and awkward row."""
    rng = np.random.default_rng(seed)
    proj = MetricProjection("EPSG:27700")
    lines = []
    t0 = int(start.timestamp() * 1000)
    for k in range(n_officers):
        steps = rng.normal(0, 30, (n_fixes, 2))
        pos = np.array(CENTRE) + rng.normal(0, 120, 2) + np.cumsum(steps, axis=0)
        # Pull the walk back towards the hot spots so it keeps crossing them.
        pos = CENTRE + (pos - CENTRE) * 0.4
        dts = rng.choice([1, 5, 15, 30, 60, max_interval_s], size=n_fixes, p=[.05, .25, .3, .25, .1, .05])
        ts = t0 + np.cumsum((dts * 1000).astype(np.int64))
        lon, lat = proj.to_wgs84(pos[:, 0], pos[:, 1])
        for i in range(n_fixes):
            lines.append([f"off{k}", int(ts[i]), f"{lat[i]:.7f}", f"{lon[i]:.7f}"])
    # Arrival order: by time, with some out of order within and beyond the window.
    order = np.argsort([ln[1] + (rng.integers(1, 400_000) if rng.random() < 0.05 else 0) for ln in lines],
                       kind="stable")
    lines = [lines[i] for i in order]
    out = []
    for ln in lines:
        r = rng.random()
        ts_ms = ln[1]
        if rng.random() < 0.5:
            ts_text = str(ts_ms)
        else:
            offset = dt.timezone(dt.timedelta(hours=int(rng.choice([0, 1, -5]))))
            ts_text = dt.datetime.fromtimestamp(ts_ms / 1000, tz=offset).isoformat(timespec="milliseconds")
        row = [ln[0], ts_text, ln[2], ln[3]]
        if r < 0.02:
            out.append(row)  # exact duplicate
        elif r < 0.03:
            row[2] = "NaN"
        elif r < 0.04:
            row[1] = "2024-02-30T10:00:00Z"
        elif r < 0.045:
            row[2], row[3] = "0", "0"
        elif r < 0.05:
            row[3] = ""
        elif r < 0.055:
            row[2] = "91.5"
        elif r < 0.06:
            row = row[:3]
        elif r < 0.065:
            row[2] = str(float(row[2]) + 0.05)  # a 5 km teleport
        out.append(row)
    with open(path, "w") as fh:
        fh.write("officer_id,ts,lat,lon\n")
        fh.writelines(",".join(map(str, row)) + "\n" for row in out)


def _compare(path, hotspots, rules, chunk_bytes=1 << 20):
    result = replay(path, hotspots, rules=rules, read_options=ReadOptions(chunk_bytes=chunk_bytes))
    ref_visits, ref_rejects, ref_days = replay_reference(path, hotspots, rules)
    v = result.raw_visits
    officers = result.visits["officer_id"]
    got = sorted(zip(officers.tolist(), result.visits["hotspot_id"].tolist(), v.start_ms.tolist(),
                     v.end_ms.tolist(), v.n_fixes.tolist()))
    assert got == ref_visits
    assert dict(zip(result.rejected["line"].tolist(), result.rejected["reason"].tolist())) == ref_rejects
    hd = result.hotspot_days
    got_days = {(d, h): (round(p * 1000), round(o * 1000), n, k)
                for d, h, p, o, n, k in zip(hd["policing_day"], hd["hotspot_id"], hd["presence_s"],
                                            hd["officer_s"], hd["visits"], hd["patrols"])}
    assert got_days == ref_days
    return result


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), start=st.sampled_from(STARTS), officers=st.integers(1, 4),
       max_interval_s=st.sampled_from([90.0, 400.0]),
       rules=st.sampled_from([RuleSettings(), RuleSettings(exit_margin_m=0.0, exit_grace_s=0.0, reorder_window_s=0.0,
                                                           visit_bounds="fixes"),
                              RuleSettings(exit_margin_m=40.0, exit_grace_s=120.0, max_gap_s=90.0,
                                           min_patrol_s=300.0, reorder_window_s=300.0, max_speed_mps=10.0)]))
def test_replay_equals_reference(tmp_path_factory, seed, start, officers, max_interval_s, rules):
    path = tmp_path_factory.mktemp("replay") / "fixes.csv"
    write_trouble_csv(path, seed, start, officers, 300, max_interval_s)
    _compare(path, test_hotspots(), rules, chunk_bytes=int(np.random.default_rng(seed).integers(200, 20_000)))


@pytest.mark.parametrize("start", STARTS, ids=["spring", "autumn", "gmt0600", "bst0600", "midnight"])
def test_replay_crosses_policing_day_boundaries(tmp_path, start):
    path = tmp_path / "fixes.csv"
    write_trouble_csv(path, 5, start, 3, 1500, 90.0)
    result = _compare(path, test_hotspots(), RuleSettings())
    days = sorted(set(result.hotspot_days["policing_day"].tolist()))
    assert len(days) >= 2  # the tracks run over a policing-day boundary


def test_batch_split_invariance_of_the_whole_replay(tmp_path):
    path = tmp_path / "fixes.csv"
    write_trouble_csv(path, 11, STARTS[0], 4, 500, 90.0)
    hs = test_hotspots()
    whole = replay(path, hs, read_options=ReadOptions(chunk_bytes=1 << 24))
    for chunk in (97, 1000, 7919):
        cut = replay(path, hs, read_options=ReadOptions(chunk_bytes=chunk))
        for name in ("visits", "patrols", "hotspot_days", "compliance", "rejected"):
            assert _rows(getattr(cut, name)) == _rows(getattr(whole, name)), (chunk, name)


def _rows(table):
    # NaN (no target on unscheduled days) is not equal to itself.
    return [tuple(None if isinstance(v, float) and v != v else v for v in row) for row in table.rows()]
