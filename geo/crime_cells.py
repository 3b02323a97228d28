"""Hot spots from street-level crime records: the top N grid cells by count.

Reads data.police.uk street-level CSV exports (plain, ``.gz`` or
tab-separated), counts records in square cells aligned to a `cell_m` grid in
a metric CRS, keeps the busiest cells and writes them as a GeoJSON hot spot
file (WGS84 squares), optionally labelled with the ward (district) whose
polygon contains each cell centre.
"""

from __future__ import annotations

import collections
import csv
import gzip
import io
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.geometry

from geo.gpkg import read_gpkg
from geo.projection import WGS84, MetricProjection, transformer

__all__ = [
    "ATTRIBUTION",
    "CrimeRecords",
    "build_crime_hotspots",
    "build_nottingham_hotspots",
    "read_crime_records",
    "write_geojson",
]

ATTRIBUTION = (
    "Contains public sector information licensed under the Open Government Licence v3.0. "
    "Crime data: Home Office / data.police.uk. Boundaries: Office for National Statistics; "
    "contains OS data \u00a9 Crown copyright and database right."
)
_LOCATION_PREFIX = "on or near"
# 6 decimal places of a degree is ~0.1 m: squares stay square and valid.
_DECIMALS = 6


@dataclass(frozen=True)
class CrimeRecords:
    """Crime record positions read from one or more files.

    Attributes
    ----------
    lon, lat : numpy.ndarray of float64, shape (n,)
        WGS84 degrees of the usable records.
    location : tuple of str
        Street / place name of each usable record, "On or near " removed.
    n_rows : int
        Data rows read (usable + skipped).
    n_skipped : int
        Rows skipped for empty, non-numeric or out-of-range coordinates.
    """

    lon: np.ndarray
    lat: np.ndarray
    location: tuple
    n_rows: int
    n_skipped: int


def _open_text(path: str):
    raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _coord(text: str, limit: float) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) and abs(v) <= limit else math.nan


def read_crime_records(paths) -> CrimeRecords:
    """Read data.police.uk street-level crime files.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        CSV or tab-separated files, optionally gzip-compressed (``.gz``);
        header with ``longitude``, ``latitude`` and optionally ``location``
        (case-insensitive).

    Returns
    -------
    CrimeRecords

    Raises
    ------
    ValueError
        If a file lacks the longitude/latitude columns.
    """
    lons: list[float] = []
    lats: list[float] = []
    locs: list[str] = []
    n_rows = n_skipped = 0
    for p in paths:
        path = os.fspath(p)
        with _open_text(path) as fh:
            header = fh.readline()
            delim = "\t" if "\t" in header else ","
            cols = [c.strip().lower() for c in next(csv.reader([header], delimiter=delim))]
            if "longitude" not in cols or "latitude" not in cols:
                raise ValueError(f"{path}: no 'longitude' and 'latitude' columns in header {cols}")
            ix, iy = cols.index("longitude"), cols.index("latitude")
            il = cols.index("location") if "location" in cols else -1
            for row in csv.reader(fh, delimiter=delim):
                if not row:
                    continue
                n_rows += 1
                lon = _coord(row[ix], 180.0) if ix < len(row) else math.nan
                lat = _coord(row[iy], 90.0) if iy < len(row) else math.nan
                # 0/0 is the null island of broken geocoders, never a UK street.
                if math.isnan(lon) or math.isnan(lat) or (lon == 0.0 and lat == 0.0):
                    n_skipped += 1
                    continue
                lons.append(lon)
                lats.append(lat)
                loc = row[il].strip() if 0 <= il < len(row) else ""
                if loc.lower().startswith(_LOCATION_PREFIX):
                    loc = loc[len(_LOCATION_PREFIX):].strip()
                locs.append(loc)
    return CrimeRecords(
        lon=np.asarray(lons, dtype=np.float64), lat=np.asarray(lats, dtype=np.float64),
        location=tuple(locs), n_rows=n_rows, n_skipped=n_skipped,
    )


def build_crime_hotspots(
    csv_paths,
    cell_m: float = 150.0,
    top: int = 57,
    crs: str = "EPSG:27700",
    groups_path=None,
    group_field: str | None = None,
    id_prefix: str = "HS",
    target_minutes: float = 15.0,
) -> dict:
    """The `top` grid cells with the most crime records, as a hot spot FeatureCollection.

    Parameters
    ----------
    csv_paths : sequence of str or os.PathLike
        data.police.uk street-level files (see :func:`read_crime_records`).
    cell_m : float, default 150.0
        Cell side in metres; cells are aligned to multiples of `cell_m` in `crs`.
    top : int, default 57
        Number of cells kept (fewer if fewer cells have records).
    crs : str, default "EPSG:27700"
        Metric CRS of the grid.
    groups_path : str or os.PathLike, optional
        GeoPackage (``.gpkg``) or GeoJSON of districts (e.g. wards); each
        cell's ``group`` is the district containing the cell centre ("" if none).
    group_field : str, optional
        District name column; autodetected when None (a column ending in
        ``NM``, else ``name``/``*_name``).
    id_prefix : str, default "HS"
        Ids are ``f"{id_prefix}-{rank:03d}"`` (rank 1 = most records; ties by
        easting, then northing of the cell).
    target_minutes : float, default 15.0
        Patrol target written on every hot spot.

    Returns
    -------
    dict
        GeoJSON FeatureCollection (WGS84, 6 decimals) with properties ``id``,
        ``rank``, ``count``, ``name`` (most frequent location), ``group``,
        ``target_minutes``, ``cell_e_m``/``cell_n_m`` (south-west corner in
        `crs`), and a ``metadata`` member with record counts and attribution.
    """
    if not (math.isfinite(cell_m) and cell_m > 0):
        raise ValueError(f"cell_m must be > 0 metres, got {cell_m}")
    if int(top) < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    paths = [os.fspath(p) for p in csv_paths]
    if not paths:
        raise ValueError("no crime files given")
    rec = read_crime_records(paths)
    proj = MetricProjection(crs)
    x, y = proj.to_metric(rec.lon, rec.lat)
    ok = np.isfinite(x) & np.isfinite(y)
    n_unprojected = int((~ok).sum())
    cx = np.floor(x[ok] / cell_m).astype(np.int64)
    cy = np.floor(y[ok] / cell_m).astype(np.int64)
    locations = [loc for loc, good in zip(rec.location, ok) if good]

    cells, inverse, counts = np.unique(
        np.column_stack([cx, cy]).reshape(-1, 2), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    order = np.lexsort((cells[:, 1], cells[:, 0], -counts))[: int(top)]

    names = _cell_names(inverse, locations, order)
    e0 = cells[order, 0] * cell_m
    n0 = cells[order, 1] * cell_m
    groups = [""] * len(order)
    if groups_path is not None:
        groups = _cell_groups(groups_path, group_field, crs, e0 + cell_m / 2, n0 + cell_m / 2)

    width = max(3, len(str(int(top))))
    features = []
    for rank, ci in enumerate(order, start=1):
        k = rank - 1
        ring = _square_wgs84(proj, float(e0[k]), float(n0[k]), cell_m)
        features.append({
            "type": "Feature",
            "id": f"{id_prefix}-{rank:0{width}d}",
            "properties": {
                "id": f"{id_prefix}-{rank:0{width}d}",
                "rank": rank,
                "count": int(counts[ci]),
                "name": names[k],
                "group": groups[k],
                "target_minutes": float(target_minutes),
                "cell_e_m": float(e0[k]),
                "cell_n_m": float(n0[k]),
            },
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        })
    return {
        "type": "FeatureCollection",
        "metadata": {
            "generator": "geo.crime_cells.build_crime_hotspots",
            "sources": [os.path.basename(p) for p in paths],
            "cell_m": float(cell_m),
            "top": int(top),
            "crs": crs,
            "records_read": rec.n_rows,
            "records_skipped": rec.n_skipped + n_unprojected,
            "cells_with_records": int(cells.shape[0]),
            "attribution": ATTRIBUTION,
        },
        "features": features,
    }


def _cell_names(inverse: np.ndarray, locations: list[str], order: np.ndarray) -> list[str]:
    """Most frequent non-empty location per kept cell (ties: alphabetical)."""
    wanted = {int(ci): k for k, ci in enumerate(order)}
    tallies = [collections.Counter() for _ in order]
    for ci, loc in zip(inverse.tolist(), locations):
        k = wanted.get(ci)
        if k is not None and loc:
            tallies[k][loc] += 1
    return [min(t.items(), key=lambda kv: (-kv[1], kv[0]))[0] if t else "" for t in tallies]


def _square_wgs84(proj: MetricProjection, e0: float, n0: float, cell_m: float) -> list:
    # Counter-clockwise exterior, as RFC 7946 recommends.
    xs = np.array([e0, e0 + cell_m, e0 + cell_m, e0, e0])
    ys = np.array([n0, n0, n0 + cell_m, n0 + cell_m, n0])
    lon, lat = proj.to_wgs84(xs, ys)
    ring = [[round(float(a), _DECIMALS), round(float(b), _DECIMALS)] for a, b in zip(lon, lat)]
    ring[-1] = list(ring[0])
    poly = shapely.geometry.Polygon(ring)
    if not poly.is_valid or poly.area <= 0:
        raise ValueError(f"cell at ({e0}, {n0}) m is not a valid square after reprojection")
    return ring


def _read_groups(groups_path, group_field: str | None):
    """Return (shapely geometries, names, CRS) of the district file."""
    path = os.fspath(groups_path)
    if path.lower().endswith(".gpkg"):
        layer = read_gpkg(path)
        geoms, props, columns, srs = layer.geometries, layer.properties, layer.columns, layer.srs
    else:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
        feats = obj.get("features", [])
        geoms = np.array([shapely.geometry.shape(f["geometry"]) if f.get("geometry") else None
                          for f in feats], dtype=object)
        props = [f.get("properties") or {} for f in feats]
        columns = tuple(dict.fromkeys(k for p in props for k in p))
        srs = WGS84
    field = group_field or _detect_name_field(columns, props, path)
    if field not in columns:
        raise ValueError(f"{path}: no field {field!r}; fields are {list(columns)}")
    names = ["" if p.get(field) is None else str(p.get(field)) for p in props]
    return geoms, names, srs


def _detect_name_field(columns, props, path: str) -> str:
    texty = [c for c in columns if props and all(isinstance(p.get(c), (str, type(None))) for p in props)]
    for rule in (lambda c: c.endswith("NM"), lambda c: c.lower() == "name",
                 lambda c: c.lower().endswith("_name"), lambda c: c.lower().endswith("name")):
        hits = [c for c in texty if rule(c)]
        if hits:
            return hits[0]
    raise ValueError(f"{path}: cannot tell which field holds the district name among "
                     f"{list(columns)}; pass group_field")


def _cell_groups(groups_path, group_field, crs: str, ex: np.ndarray, ny: np.ndarray) -> list[str]:
    geoms, names, srs = _read_groups(groups_path, group_field)
    tr = transformer(srs, crs)

    def to_metric(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(tr.transform(coords[:, 0], coords[:, 1]))

    metric = shapely.transform(geoms, to_metric)
    tree = shapely.STRtree(metric)
    pt_idx, geom_idx = tree.query(shapely.points(ex, ny), predicate="within")
    out = [""] * ex.shape[0]
    # Pairs come sorted by point; on a shared border take the lowest-numbered
    # district so the choice is deterministic.
    for p, g in sorted(zip(pt_idx.tolist(), geom_idx.tolist()), reverse=True):
        out[p] = names[g]
    return out


def write_geojson(obj: dict, path) -> None:
    """Write a FeatureCollection deterministically: one feature per line, UTF-8, newline-terminated."""
    head = {k: v for k, v in obj.items() if k != "features"}
    lines = [json.dumps(f, ensure_ascii=False, sort_keys=False) for f in obj.get("features", [])]
    text = json.dumps(head, ensure_ascii=False)[:-1]
    text += (', "features": [\n' + ",\n".join(lines) + "\n]}\n") if lines else ', "features": []}\n'
    with open(os.fspath(path), "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def build_nottingham_hotspots(data_dir) -> dict:
    """Rebuild ``geo/data/nottingham_hotspots.geojson`` from the repository's ``data/uk``.

    Top 57 cells of 150 m from the 2022 burglary and robbery records, grouped
    by the 20 ONS wards, ids ``NOT-001`` ... ``NOT-057``.
    """
    d = os.fspath(data_dir)
    return build_crime_hotspots(
        [os.path.join(d, "nottingham_burglary.csv.gz"), os.path.join(d, "nottingham_robbery.csv.gz")],
        cell_m=150.0, top=57, crs="EPSG:27700",
        groups_path=os.path.join(d, "nottingham_wards.gpkg"), id_prefix="NOT",
    )
