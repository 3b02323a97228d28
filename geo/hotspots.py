"""Hot spots: load and validate a GeoJSON file, locate fixes in them.

A hot spot file is a GeoJSON FeatureCollection (RFC 7946, WGS84) of Polygon
or MultiPolygon features with a unique ``id`` and optional ``name``,
``group`` (district) and ``target_minutes``. Every problem is an error that
names the file, the feature and the problem; nothing is silently dropped.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import shapely
import shapely.geometry
from shapely.validation import explain_validity

from geo.packing import GRID_MARGIN_M, PackedPolygons, pack_polygons
from geo.projection import MetricProjection
from kernels.locate import locate_points

__all__ = ["DEFAULT_TARGET_MINUTES", "HotspotFileError", "HotspotSet", "load_hotspots"]

# Grip patrols aim at 15 minutes (Koper curve: 10-16 minute stops work best).
DEFAULT_TARGET_MINUTES = 15.0
_WGS84_NAMES = {"urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84",
                "EPSG:4326", "urn:ogc:def:crs:EPSG::4326"}


_LIMITS = np.array([180.0, 90.0])


class HotspotFileError(ValueError):
    """A hot spot file (or dict) is malformed; the message names file, feature and problem."""


class _FeatureProblem(Exception):
    """Internal: a problem in one feature, turned into HotspotFileError with context."""


@dataclass(frozen=True, eq=False)
class HotspotSet:
    """Validated hot spots with their packed spatial index.

    Build with :func:`load_hotspots` or :meth:`from_geojson_dict`.

    Attributes
    ----------
    ids : tuple of str
        Unique ids, in file order; hot spot index ``i`` is ``ids[i]``.
    names : tuple of str
        Display names (the id when the feature has none).
    groups : tuple of str
        District of each hot spot ("" when absent).
    target_minutes : numpy.ndarray of float64, shape (n,)
        Patrol target per scheduled day, minutes.
    crs : str
        The metric CRS used for geometry (default British National Grid).
    geometries_wgs84, geometries_metric : numpy.ndarray of object, shape (n,)
        shapely Polygon/MultiPolygon in degrees and in metres.
    packed : PackedPolygons
        Flat polygon arrays and the packed R-tree the kernels traverse.
    source : str
        File name (or label) the set was read from, for messages.
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]
    groups: tuple[str, ...]
    target_minutes: np.ndarray
    crs: str
    geometries_wgs84: np.ndarray
    geometries_metric: np.ndarray
    packed: PackedPolygons
    source: str
    projection: MetricProjection = field(repr=False)
    _index: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {hid: i for i, hid in enumerate(self.ids)})

    @classmethod
    def from_geojson_dict(
        cls,
        obj: dict,
        source: str = "<dict>",
        crs: str = "EPSG:27700",
        grid_margin_m: float = GRID_MARGIN_M,
    ) -> HotspotSet:
        """Validate a GeoJSON FeatureCollection and build the set.

        Parameters
        ----------
        obj : dict
            Parsed GeoJSON FeatureCollection, WGS84 lon/lat degrees.
        source : str
            Label for error messages (the file name when loading a file).
        crs : str, default "EPSG:27700"
            Projected CRS in metres for the geometry tests.
        grid_margin_m : float, default 50.0
            Largest `margin_m` served by the index's bucket grid (metres);
            larger margins are still exact, through the R-tree.

        Raises
        ------
        HotspotFileError
            On any malformed feature, missing or duplicate id, invalid
            geometry; the message names `source`, the feature and the problem.
        """
        return _build(obj, source, crs, grid_margin_m)

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, hotspot_id: str) -> int:
        """Index of the hot spot with id `hotspot_id`; KeyError if unknown."""
        try:
            return self._index[hotspot_id]
        except KeyError:
            raise KeyError(f"no hot spot with id {hotspot_id!r} in {self.source}") from None

    @property
    def centroids_wgs84(self) -> tuple[np.ndarray, np.ndarray]:
        """Centroids (computed in metres, returned in degrees).

        Returns
        -------
        lon, lat : numpy.ndarray of float64, shape (n,)
        """
        c = shapely.centroid(self.geometries_metric)
        return self.projection.to_wgs84(shapely.get_x(c), shapely.get_y(c))

    def project(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 degrees -> metres in :attr:`crs` (NaN stays NaN).

        Parameters
        ----------
        lon, lat : array_like of float64, shape (n,)

        Returns
        -------
        x_m, y_m : numpy.ndarray of float64, shape (n,)
        """
        return self.projection.to_metric(lon, lat)

    def locate(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Every (fix, hot spot) pair where the fix lies in the hot spot.

        Parameters
        ----------
        lon, lat : array_like of float64, shape (n,)
            Fix positions, WGS84 degrees. NaN gives no pairs.

        Returns
        -------
        fix_index, hotspot_index : numpy.ndarray of int64, shape (n_pairs,)
            Sorted by (fix_index, hotspot_index); overlapping hot spots are
            all reported. Boundary points follow the half-open crossing-number
            rule of :mod:`kernels.locate`.
        """
        x, y = self.project(lon, lat)
        fix, hot, _ = locate_points(x, y, self.packed, 0.0)
        return fix, hot

    def locate_metric(self, x_m, y_m, margin_m=0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs within `margin_m` of a hot spot, on projected coordinates.

        The dwell engine's two fences: enter on ``inside``, leave when a fix
        has no pair at all with ``margin_m = exit_margin_m``.

        Parameters
        ----------
        x_m, y_m : array_like of float64, shape (n,)
            Fix positions in metres (:attr:`crs`). NaN gives no pairs.
        margin_m : float or array_like of float64, shape (n,), default 0.0
            Buffer distance in metres, >= 0: one for every fix, or one per fix.

        Returns
        -------
        fix_index, hotspot_index : numpy.ndarray of int64, shape (n_pairs,)
            Every pair with distance(fix, hot spot) <= `margin_m`, sorted by
            (fix_index, hotspot_index).
        inside : numpy.ndarray of bool, shape (n_pairs,)
            True when the fix lies in the polygon itself.
        """
        return locate_points(x_m, y_m, self.packed, margin_m)


def load_hotspots(path, crs: str = "EPSG:27700", grid_margin_m: float = GRID_MARGIN_M) -> HotspotSet:
    """Read and validate a GeoJSON hot spot file.

    Parameters
    ----------
    path : str or os.PathLike
        GeoJSON FeatureCollection (WGS84).
    crs : str, default "EPSG:27700"
        Projected CRS in metres.
    grid_margin_m : float, default 50.0
        See :meth:`HotspotSet.from_geojson_dict`.

    Returns
    -------
    HotspotSet

    Raises
    ------
    HotspotFileError
        A missing or unreadable file, text that is not UTF-8 JSON, or any
        invalid feature (the message names file, feature and problem).
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            obj = json.loads(fh.read().decode("utf-8-sig"))
    except OSError as exc:
        raise HotspotFileError(f"{source}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise HotspotFileError(f"{source}: not UTF-8 text (save the GeoJSON as UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise HotspotFileError(f"{source}: not valid JSON: {exc}") from None
    return _build(obj, source, crs, grid_margin_m)


def _build(obj, source: str, crs: str, grid_margin_m: float) -> HotspotSet:
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection":
        kind = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
        raise HotspotFileError(f"{source}: not a GeoJSON FeatureCollection (type {kind!r})")
    _check_crs_member(obj, source)
    features = obj.get("features")
    if not isinstance(features, list):
        raise HotspotFileError(f"{source}: 'features' must be a list")
    if not features:
        raise HotspotFileError(f"{source}: the FeatureCollection has no features")

    ids: list[str] = []
    names: list[str] = []
    groups: list[str] = []
    targets: list[float] = []
    geoms = []
    seen: dict[str, int] = {}
    for i, feat in enumerate(features):
        hid = None
        try:
            if not isinstance(feat, dict) or feat.get("type") != "Feature":
                raise _FeatureProblem("not a GeoJSON Feature object")
            props = feat.get("properties") or {}
            if not isinstance(props, dict):
                raise _FeatureProblem("'properties' must be an object")
            hid = _feature_id(feat, props)
            if hid in seen:
                raise _FeatureProblem(f"duplicate id (first used by feature {seen[hid]})")
            seen[hid] = i
            names.append(_optional_str(props, "name") or hid)
            groups.append(_optional_str(props, "group") or "")
            targets.append(_target_minutes(props))
            geoms.append(_geometry(feat.get("geometry")))
            ids.append(hid)
        except _FeatureProblem as exc:
            where = f"feature {i}" + (f" (id {hid!r})" if hid is not None else "")
            raise HotspotFileError(f"{source}: {where}: {exc}") from None

    projection = MetricProjection(crs)
    wgs = np.empty(len(geoms), dtype=object)
    wgs[:] = geoms
    ok = shapely.is_valid(wgs) & ~shapely.is_empty(wgs)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        problem = "empty geometry" if wgs[i].is_empty else f"invalid geometry: {explain_validity(wgs[i])}"
        raise HotspotFileError(f"{source}: feature {i} (id {ids[i]!r}): {problem}")

    def to_metric(coords: np.ndarray) -> np.ndarray:
        x, y = projection.to_metric(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    metric = shapely.transform(wgs, to_metric)
    ok = shapely.is_valid(metric)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise HotspotFileError(
            f"{source}: feature {i} (id {ids[i]!r}): invalid after projection to {crs}: "
            f"{explain_validity(metric[i])}"
        )
    wgs.flags.writeable = False
    metric.flags.writeable = False
    target = np.asarray(targets, dtype=np.float64)
    target.flags.writeable = False
    return HotspotSet(
        ids=tuple(ids), names=tuple(names), groups=tuple(groups), target_minutes=target,
        crs=crs, geometries_wgs84=wgs, geometries_metric=metric,
        packed=pack_polygons(metric, grid_margin_m=grid_margin_m), source=source,
        projection=projection,
    )


def _check_crs_member(obj: dict, source: str) -> None:
    # RFC 7946 dropped "crs"; old files with a projected CRS would otherwise
    # fail later with a confusing out-of-range error.
    crs = obj.get("crs")
    if crs is None:
        return
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) else None
    if name not in _WGS84_NAMES:
        raise HotspotFileError(
            f"{source}: coordinates must be WGS84 longitude/latitude (RFC 7946), "
            f"but the file declares crs {name!r}"
        )


def _feature_id(feat: dict, props: dict) -> str:
    fid = feat.get("id")
    pid = props.get("id")
    if fid is not None and pid is not None and _id_str(fid) != _id_str(pid):
        raise _FeatureProblem(f"feature id {fid!r} and properties.id {pid!r} disagree")
    raw = fid if fid is not None else pid
    if raw is None:
        raise _FeatureProblem("missing id (set the feature 'id' or properties.id)")
    return _id_str(raw)


def _id_str(raw) -> str:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise _FeatureProblem(f"id must be a string or an integer, got {raw!r}")
    hid = str(raw).strip()
    if not hid:
        raise _FeatureProblem("id is empty")
    return hid


def _optional_str(props: dict, key: str) -> str | None:
    value = props.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _FeatureProblem(f"property {key!r} must be a string, got {value!r}")


def _target_minutes(props: dict) -> float:
    value = props.get("target_minutes")
    if value is None:
        return DEFAULT_TARGET_MINUTES
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FeatureProblem(f"target_minutes must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise _FeatureProblem(f"target_minutes must be finite and > 0, got {value!r}")
    return float(value)


def _geometry(geom):
    if geom is None:
        raise _FeatureProblem("has no geometry")
    if not isinstance(geom, dict):
        raise _FeatureProblem("geometry must be an object")
    kind = geom.get("type")
    coords = geom.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise _FeatureProblem("empty MultiPolygon")
        polygons = coords
    else:
        raise _FeatureProblem(f"geometry type {kind!r} is not Polygon or MultiPolygon")
    parts = []
    for p, rings in enumerate(polygons):
        label = f"polygon {p} " if kind == "MultiPolygon" else ""
        if not isinstance(rings, list) or not rings:
            raise _FeatureProblem(f"{label}empty polygon (no rings)")
        checked = [_ring(ring, f"{label}ring {r}") for r, ring in enumerate(rings)]
        parts.append(shapely.geometry.Polygon(checked[0], checked[1:]))
    # Validity is tested for all features at once in _build (GEOS per call
    # overhead dominates for large files).
    return parts[0] if kind == "Polygon" else shapely.geometry.MultiPolygon(parts)


def _ring(ring, label: str) -> np.ndarray:
    if not isinstance(ring, list):
        raise _FeatureProblem(f"{label} is not a list of positions")
    if len(ring) < 4:
        raise _FeatureProblem(f"{label} has {len(ring)} positions; a closed ring needs at least 4")
    try:
        arr = np.asarray(ring)
    except ValueError:  # ragged
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] not in (2, 3) or arr.dtype.kind not in "fi":
        # Slow path only to name the offending position.
        for k, pos in enumerate(ring):
            if (not isinstance(pos, (list, tuple)) or not 2 <= len(pos) <= 3
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pos)):
                raise _FeatureProblem(f"{label} position {k} is not [lon, lat]: {pos!r}")
        arr = np.asarray([pos[:2] for pos in ring], dtype=np.float64)
    arr = np.ascontiguousarray(arr[:, :2], dtype=np.float64)
    # One vectorised test on the fast path (NaN fails it too); the detailed
    # checks below only run to name the problem.
    if (np.abs(arr) <= _LIMITS).all() and np.array_equal(arr[0], arr[-1]):
        return arr
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise _FeatureProblem(f"{label} position {k} is not finite: {ring[k]!r}")
    bad = (np.abs(arr[:, 0]) > 180.0) | (np.abs(arr[:, 1]) > 90.0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise _FeatureProblem(
            f"{label} position {k} {ring[k]!r} is out of range for WGS84 lon/lat "
            "(projected coordinates? GeoJSON must be degrees)"
        )
    if not np.array_equal(arr[0], arr[-1]):
        raise _FeatureProblem(f"{label} is not closed (first position != last)")
    return arr
