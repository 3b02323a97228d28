"""geo.crime_cells and geo.gpkg: counts on a hand-made file, the shipped file rebuilds."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from geo import NOTTINGHAM_HOTSPOTS_PATH, HotspotSet, MetricProjection
from geo.crime_cells import build_crime_hotspots, build_nottingham_hotspots, read_crime_records, write_geojson
from geo.gpkg import read_gpkg, strip_gpkg_header

REPO = Path(__file__).resolve().parents[1]
PROJ = MetricProjection("EPSG:27700")
# Three cells of 150 m (south-west corners in EPSG:27700); records at their centres.
CELLS = {"a": (457_050.0, 339_900.0), "b": (456_900.0, 339_900.0), "c": (457_200.0, 340_200.0)}


def lonlat(cell: str, dx: float = 0.0) -> tuple[str, str]:
    e, n = CELLS[cell]
    lon, lat = PROJ.to_wgs84(np.array([e + 75.0 + dx]), np.array([n + 75.0]))
    return f"{lon[0]:.6f}", f"{lat[0]:.6f}"


def write_csv(path: Path, rows, delim=",") -> Path:
    lines = [delim.join(["Month", "Longitude", "Latitude", "Location", "LSOA_code"])]
    for month, (lon, lat), loc in rows:
        lines.append(delim.join([month, lon, lat, loc, "E0100"]))
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture
def crime_files(tmp_path):
    # a: 3 records, b: 2, c: 2 (b and c tie: b has the smaller easting).
    f1 = write_csv(tmp_path / "one.csv", [
        ("2022-01", lonlat("a"), "On or near High Street"),
        ("2022-01", lonlat("a", 10), "On or near High Street"),
        ("2022-01", lonlat("c"), "Park Row"),
        ("2022-01", ("", ""), "On or near Nowhere"),
        ("2022-01", ("abc", "52.9"), "Bad"),
    ])
    f2 = write_csv(tmp_path / "two.tab.gz", [
        ("2022-02", lonlat("a", -10), "Low Street"),
        ("2022-02", lonlat("b"), "Zeta Road"),
        ("2022-02", lonlat("b", 5), "Alpha Road"),
        ("2022-02", lonlat("c", 5), "Park Row"),
        ("2022-02", ("0", "0"), "Null Island"),
    ], delim="\t")
    return [f1, f2]


def test_counts_ranks_names_and_skips(crime_files):
    obj = build_crime_hotspots(crime_files, cell_m=150.0, top=2, id_prefix="T")
    feats = obj["features"]
    assert [f["id"] for f in feats] == ["T-001", "T-002"]
    props = [f["properties"] for f in feats]
    assert [(p["count"], p["rank"], p["cell_e_m"], p["cell_n_m"]) for p in props] == [
        (3, 1, *CELLS["a"]), (2, 2, *CELLS["b"])]
    assert props[0]["name"] == "High Street" and props[1]["name"] == "Alpha Road"  # tie -> alphabetical
    assert props[0]["group"] == "" and props[0]["target_minutes"] == 15.0
    meta = obj["metadata"]
    assert meta["records_read"] == 10 and meta["records_skipped"] == 3
    assert meta["cells_with_records"] == 3 and meta["sources"] == ["one.csv", "two.tab.gz"]
    # The squares load as valid hot spots and hold their own records.
    hs = HotspotSet.from_geojson_dict(obj)
    rec = read_crime_records(crime_files)
    _, hot = hs.locate(rec.lon, rec.lat)
    assert np.bincount(hot, minlength=2).tolist() == [3, 2]
    area = [g.area for g in hs.geometries_metric]
    np.testing.assert_allclose(area, 150.0 * 150.0, rtol=1e-3)


def test_groups_from_geojson_wards(crime_files, tmp_path):
    e, n = CELLS["a"]
    xs = np.array([e - 10, e + 140, e + 140, e - 10, e - 10])
    ys = np.array([n - 10, n - 10, n + 500, n + 500, n - 10])
    lon, lat = PROJ.to_wgs84(xs, ys)
    wards = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"WD22CD": "E05000001", "WD22NM": "Test Ward"},
        "geometry": {"type": "Polygon", "coordinates": [np.column_stack([lon, lat]).tolist()]}}]}
    path = tmp_path / "wards.geojson"
    path.write_text(json.dumps(wards))
    obj = build_crime_hotspots(crime_files, top=3, groups_path=path)
    assert [f["properties"]["group"] for f in obj["features"]] == ["Test Ward", "", ""]
    with pytest.raises(ValueError, match="no field"):
        build_crime_hotspots(crime_files, groups_path=path, group_field="nope")


def test_bad_arguments(crime_files, tmp_path):
    with pytest.raises(ValueError, match="cell_m"):
        build_crime_hotspots(crime_files, cell_m=0)
    with pytest.raises(ValueError, match="top"):
        build_crime_hotspots(crime_files, top=0)
    bad = tmp_path / "bad.csv"
    bad.write_text("month,x,y\n2022-01,1,2\n")
    with pytest.raises(ValueError, match="bad.csv: no 'longitude'"):
        build_crime_hotspots([bad])


def test_read_gpkg_wards():
    layer = read_gpkg(REPO / "data" / "uk" / "nottingham_wards.gpkg")
    assert layer.srs == "EPSG:4326" and len(layer.geometries) == 20
    assert "ward_name" in layer.columns
    assert all(g.is_valid and g.geom_type == "MultiPolygon" for g in layer.geometries)
    with pytest.raises(ValueError, match="magic"):
        strip_gpkg_header(b"XX\x00\x01\x00\x00\x00\x00")
    assert strip_gpkg_header(b"GP\x00\x11\x00\x00\x00\x00") is None  # empty flag


def test_shipped_geojson_regenerates_identically(tmp_path):
    out = tmp_path / "rebuilt.geojson"
    write_geojson(build_nottingham_hotspots(REPO / "data" / "uk"), out)
    assert out.read_bytes() == Path(NOTTINGHAM_HOTSPOTS_PATH).read_bytes()
