"""geo.hotspots, geo.projection: loading, validation errors, locate on real data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from geo.synthetic import random_hotspots, random_points
from geo import NOTTINGHAM_HOTSPOTS_PATH, HotspotFileError, HotspotSet, MetricProjection, load_hotspots
from geo.crime_cells import read_crime_records
from tests.reference.locate import locate_reference

REPO = Path(__file__).resolve().parents[1]
SQUARE = [[-1.15, 52.95], [-1.148, 52.95], [-1.148, 52.952], [-1.15, 52.952], [-1.15, 52.95]]


def feature(fid="A", coords=None, gtype="Polygon", **props):
    f = {"type": "Feature", "properties": dict(props),
         "geometry": {"type": gtype, "coordinates": coords if coords is not None else [SQUARE]}}
    if fid is not None:
        f["id"] = fid
    return f


def collection(*features):
    return {"type": "FeatureCollection", "features": list(features)}


# --- projection -------------------------------------------------------------

def test_projection_round_trip_and_nan():
    proj = MetricProjection()
    lon = np.array([-1.15, -0.1276, -3.19, np.nan])
    lat = np.array([52.95, 51.5072, 55.95, 52.0])
    x, y = proj.to_metric(lon, lat)
    assert abs(x[0] - 457_200) < 1_000 and abs(y[0] - 339_800) < 1_000  # Nottingham
    assert np.isnan(x[3]) and np.isnan(y[3])
    lon2, lat2 = proj.to_wgs84(x, y)
    np.testing.assert_allclose(lon2[:3], lon[:3], atol=1e-9)
    np.testing.assert_allclose(lat2[:3], lat[:3], atol=1e-9)
    assert np.isnan(lon2[3])
    # Same Transformer object for the same CRS pair.
    assert MetricProjection()._forward is proj._forward


def test_projection_rejects_geographic_crs():
    with pytest.raises(ValueError, match="not a projected CRS"):
        MetricProjection("EPSG:4326")


# --- loading ----------------------------------------------------------------

def test_load_file_with_defaults_and_int_ids(tmp_path):
    hole = [[-1.1495, 52.9505], [-1.1485, 52.9505], [-1.1485, 52.9515], [-1.1495, 52.9515], [-1.1495, 52.9505]]
    far = [[[x + 0.01, y] for x, y in SQUARE]]
    obj = collection(
        feature(7, name="Market Sq", group="Castle", target_minutes=20),
        feature(None, [[SQUARE, hole], far], "MultiPolygon", id="B"),
    )
    path = tmp_path / "hs.geojson"
    path.write_text(json.dumps(obj))
    hs = load_hotspots(path)
    assert len(hs) == 2 and hs.ids == ("7", "B") and hs.index_of("B") == 1
    assert hs.names == ("Market Sq", "B") and hs.groups == ("Castle", "")
    assert hs.target_minutes.tolist() == [20.0, 15.0] and hs.crs == "EPSG:27700"
    lon, lat = hs.centroids_wgs84
    assert abs(lon[0] + 1.149) < 1e-4 and abs(lat[0] - 52.951) < 1e-4
    # In the hole of B but inside A; inside B's second part; outside both.
    fix, hot = hs.locate(np.array([-1.149, -1.139, -1.16, np.nan]), np.array([52.951, 52.951, 52.951, 52.951]))
    assert list(zip(fix.tolist(), hot.tolist())) == [(0, 0), (1, 1)]
    with pytest.raises(KeyError, match="nope"):
        hs.index_of("nope")


def _error(obj) -> str:
    with pytest.raises(HotspotFileError) as info:
        HotspotSet.from_geojson_dict(obj, source="hotspots.geojson")
    return str(info.value)


@pytest.mark.parametrize("bad_feature, expected", [
    (feature(None), ["feature 1", "missing id"]),
    (feature("A"), ["feature 1", "'A'", "duplicate id", "feature 0"]),
    (feature("bow", [[[-1.15, 52.95], [-1.148, 52.952], [-1.148, 52.95], [-1.15, 52.952], [-1.15, 52.95]]]),
     ["feature 1", "'bow'", "invalid geometry", "Self-intersection"]),
    (feature("pt", [-1.15, 52.95], "Point"), ["feature 1", "'pt'", "'Point' is not Polygon"]),
    (feature("bng", [[[457000, 340000], [457100, 340000], [457100, 340100], [457000, 340000]]]),
     ["feature 1", "'bng'", "out of range"]),
    (feature("open", [SQUARE[:-1] + [[-1.1499, 52.95]]]), ["feature 1", "'open'", "not closed"]),
    (feature("few", [SQUARE[:3]]), ["feature 1", "'few'", "at least 4"]),
    (feature("nan", [[[float("nan"), 52.95]] + SQUARE[1:]]), ["feature 1", "'nan'", "not finite"]),
    (feature("empty", []), ["feature 1", "'empty'", "empty polygon"]),
    (feature("nogeom") | {"geometry": None}, ["feature 1", "'nogeom'", "no geometry"]),
    (feature("t", target_minutes=-5), ["feature 1", "'t'", "target_minutes"]),
    (feature(3.5), ["feature 1", "id must be"]),
])
def test_every_error_names_file_feature_and_problem(bad_feature, expected):
    msg = _error(collection(feature("A"), bad_feature))
    assert msg.startswith("hotspots.geojson: ")
    for part in expected:
        assert part in msg, msg


def test_file_level_errors(tmp_path):
    assert "not a GeoJSON FeatureCollection" in _error({"type": "Feature"})
    assert "no features" in _error(collection())
    assert "crs" in _error(collection(feature("A")) | {
        "crs": {"type": "name", "properties": {"name": "EPSG:27700"}}})
    path = tmp_path / "broken.geojson"
    path.write_text("{not json")
    with pytest.raises(HotspotFileError, match="broken.geojson: not valid JSON"):
        load_hotspots(path)


def test_locate_synthetic_matches_shapely_and_metric_margin():
    hs = HotspotSet.from_geojson_dict(random_hotspots(200, seed=5, box_m=4_000), source="synthetic")
    x, y = random_points(5_000, seed=6, box_m=4_000)
    lon, lat = hs.projection.to_wgs84(x, y)
    fix, hot = hs.locate(lon, lat)
    xm, ym = hs.project(lon, lat)
    want = locate_reference(xm, ym, hs.geometries_metric)
    np.testing.assert_array_equal(fix, want[0])
    np.testing.assert_array_equal(hot, want[1])
    got = hs.locate_metric(xm, ym, margin_m=20.0)
    for g, w in zip(got, locate_reference(xm, ym, hs.geometries_metric, 20.0)):
        np.testing.assert_array_equal(g, w)


def test_shipped_nottingham_locates_real_crime_points():
    hs = load_hotspots(NOTTINGHAM_HOTSPOTS_PATH)
    assert len(hs) == 57 and hs.ids[0] == "NOT-001" and all(hs.groups)
    rec = read_crime_records(sorted((REPO / "data" / "uk").glob("nottingham_*.csv.gz")))
    fix, hot = hs.locate(rec.lon, rec.lat)
    x, y = hs.project(rec.lon, rec.lat)
    pts = shapely.points(x, y)
    want = [(i, h) for i in range(len(pts)) for h in
            np.flatnonzero(shapely.contains(hs.geometries_metric, pts[i]))]
    assert list(zip(fix.tolist(), hot.tolist())) == want
    # Each cell holds the records it was built from.
    counts = np.bincount(hot, minlength=len(hs))
    shipped = json.loads(Path(NOTTINGHAM_HOTSPOTS_PATH).read_text())["features"]
    assert counts.tolist() == [f["properties"]["count"] for f in shipped]


def test_hotspot_set_is_frozen():
    hs = HotspotSet.from_geojson_dict(collection(feature("A")))
    with pytest.raises(AttributeError):
        hs.ids = ("B",)
    with pytest.raises(ValueError):
        hs.target_minutes[0] = 1.0
    obj = collection(feature("A"))
    before = copy.deepcopy(obj)
    HotspotSet.from_geojson_dict(obj)
    assert obj == before
