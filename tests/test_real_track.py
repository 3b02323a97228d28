"""A real GNSS track (bus 304, Limerick) and hot spots drawn around its real stops.

The bus dwells at stops for seconds to minutes: for a hot spot drawn around a
stop, the replay must give one visit from the first to the last fix inside
the polygon (or, with midpoint bounds, from halfway back to the fix before it
to halfway on to the fix after it), whatever the rule settings around it
(margin, grace, gaps).
"""

import dataclasses
import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import shapely

from geo.gpkg import read_gpkg
from geo.hotspots import HotspotSet
from geo.projection import MetricProjection
from stream.engine import RuleSettings
from stream.replay import replay

DATA = Path(__file__).resolve().parent.parent / "data" / "tracks"
ITM = "EPSG:2157"  # Irish Transverse Mercator: Ireland's metric CRS


def _track():
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    pts = ET.parse(DATA / "304_to_UL_2019-02-18_0745.gpx").getroot().findall(".//g:trkpt", ns)
    lat = np.array([float(p.get("lat")) for p in pts])
    lon = np.array([float(p.get("lon")) for p in pts])
    times = [p.find("g:time", ns).text for p in pts]
    ts_ms = np.array([int(dt.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000) for t in times])
    return lon, lat, times, ts_ms


def _stop_hotspots(radius_m: float, square: bool) -> dict:
    layer = read_gpkg(DATA / "stops_304_to_ul.gpkg")
    proj = MetricProjection(ITM)
    features = []
    for props, point in zip(layer.properties, layer.geometries):
        x, y = proj.to_metric(np.array([point.x]), np.array([point.y]))
        shape = shapely.Point(x[0], y[0]).buffer(radius_m, cap_style="square" if square else "round")
        ring = np.asarray(shape.exterior.coords)
        lon, lat = proj.to_wgs84(ring[:, 0], ring[:, 1])
        coords = np.column_stack([lon, lat])
        coords[-1] = coords[0]
        features.append({"type": "Feature", "id": props["stop_id"],
                         "properties": {"name": props["stop_name"], "group": "304"},
                         "geometry": {"type": "Polygon", "coordinates": [coords.tolist()]}})
    return {"type": "FeatureCollection", "features": features}


@pytest.fixture(scope="module")
def track_csv(tmp_path_factory):
    lon, lat, times, _ = _track()
    path = tmp_path_factory.mktemp("track") / "bus304.csv"
    with open(path, "w") as fh:
        fh.write("officer_id,ts,lat,lon\n")
        fh.writelines(f"bus-304,{t},{la:.7f},{lo:.7f}\n" for t, la, lo in zip(times, lat, lon))
    return path


@pytest.mark.parametrize("radius_m, square", [(30.0, False), (20.0, True), (45.0, False)])
@pytest.mark.parametrize("bounds", ["fixes", "midpoint"])
@pytest.mark.parametrize("rules", [RuleSettings(), RuleSettings(exit_margin_m=0.0, exit_grace_s=0.0),
                                   RuleSettings(exit_margin_m=10.0, exit_grace_s=20.0, max_gap_s=150.0),
                                   RuleSettings(scaling="fixed")])
def test_visit_runs_from_first_to_last_fix_inside_each_stop(track_csv, radius_m, square, rules, bounds):
    # The rules fix by fix: stay points (which judge a run of fixes at their centroid) off.
    rules = dataclasses.replace(rules, visit_bounds=bounds, stay_min_fixes=0)
    hotspots = HotspotSet.from_geojson_dict(_stop_hotspots(radius_m, square), source="stops", crs=ITM)
    lon, lat, _, ts_ms = _track()
    x, y = hotspots.project(lon, lat)
    result = replay(track_csv, hotspots, rules=rules)
    assert len(result.rejected) == 0
    visits = result.raw_visits
    expected = 0
    for h, poly in enumerate(hotspots.geometries_metric):
        inside = np.flatnonzero(shapely.contains_xy(poly, x, y))
        if inside.size == 0:
            assert not np.any(visits.hotspot == h)
            continue
        # The bus passes each stop once: the inside fixes are one run.
        assert np.all(np.diff(inside) == 1)
        expected += 1
        mine = np.flatnonzero(visits.hotspot == h)
        assert mine.size == 1, hotspots.names[h]
        v = mine[0]
        first, last = ts_ms[inside[0]], ts_ms[inside[-1]]
        if bounds == "midpoint":
            gap_ms = rules.max_gap_s * 1000
            if inside[0] > 0 and first - ts_ms[inside[0] - 1] <= gap_ms:
                first = first - (first - ts_ms[inside[0] - 1]) // 2
            if inside[-1] + 1 < ts_ms.size and ts_ms[inside[-1] + 1] - last <= gap_ms:
                last = last + (ts_ms[inside[-1] + 1] - last) // 2
        assert visits.start_ms[v] == first
        assert visits.end_ms[v] == last
        assert visits.n_fixes[v] == inside.size
    assert expected >= 30 and len(visits.hotspot) == expected


@pytest.mark.parametrize("radius_m, square", [(30.0, False), (20.0, True), (45.0, False)])
def test_the_default_rules_give_one_visit_per_stop(track_csv, radius_m, square):
    # With stay points the bus's wait at a stop is judged at the centroid of its fixes, so a visit's ends
    # are the stay's, not the first and last fix inside; still one visit per stop, over its inside fixes.
    hotspots = HotspotSet.from_geojson_dict(_stop_hotspots(radius_m, square), source="stops", crs=ITM)
    lon, lat, _, ts_ms = _track()
    x, y = hotspots.project(lon, lat)
    visits = replay(track_csv, hotspots).raw_visits
    entered = 0
    for h, poly in enumerate(hotspots.geometries_metric):
        inside = np.flatnonzero(shapely.contains_xy(poly, x, y))
        mine = np.flatnonzero(visits.hotspot == h)
        assert mine.size == min(inside.size, 1), hotspots.names[h]
        if inside.size:
            entered += 1
            v = mine[0]
            assert visits.start_ms[v] <= ts_ms[inside[-1]] and visits.end_ms[v] >= ts_ms[inside[0]]
    assert entered >= 30


def test_dwell_at_track_start_is_the_longest_stop(track_csv):
    hotspots = HotspotSet.from_geojson_dict(_stop_hotspots(30.0, False), source="stops", crs=ITM)
    result = replay(track_csv, hotspots, rules=RuleSettings(min_patrol_s=200.0, visit_bounds="fixes"))
    # St Nessan's Road, the first stop (259 s), and William Street (220 s)
    # are the only stops where the bus waits over 200 s.
    by_duration = np.argsort(-result.patrols["duration_s"])
    assert result.patrols["hotspot_id"][by_duration].tolist() == ["8410B6074601", "8400B6071101"]
    assert result.patrols["start"][by_duration[0]] == "2019-02-18T07:45:50.000Z"


def test_gap_longer_than_max_gap_splits_a_real_dwell(track_csv):
    # The phone goes quiet for up to 138 s while the bus waits at William
    # Street: with a 30 s max gap that silence is not presence.
    hotspots = HotspotSet.from_geojson_dict(_stop_hotspots(30.0, False), source="stops", crs=ITM)
    # Fix by fix (stay points off): the lone fix inside before the first silence is a visit of its own.
    result = replay(track_csv, hotspots, rules=RuleSettings(max_gap_s=30.0, visit_bounds="fixes", stay_min_fixes=0))
    william = result.visits["hotspot_id"] == "8400B6071101"
    assert william.sum() == 3
    assert result.visits["duration_s"][william].sum() < 220
