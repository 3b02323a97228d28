"""Seeded synthetic hot spots and points for benchmarks and tests.

Hot spots are random star-shaped polygons (vertices at sorted random angles
around a centre, random radii), which are always simple and valid, placed in
a square box in British National Grid around Nottingham.
"""

from __future__ import annotations

import numpy as np

from geo.projection import MetricProjection

# Nottingham city centre in British National Grid (EPSG:27700), metres.
NOTTINGHAM_BNG_M = (457_000.0, 340_000.0)


def random_polygons_metric(
    n: int,
    seed: int,
    *,
    box_m: float = 20_000.0,
    center_m: tuple[float, float] = NOTTINGHAM_BNG_M,
    diameter_m: tuple[float, float] = (150.0, 600.0),
    vertices: tuple[int, int] = (8, 40),
) -> list[np.ndarray]:
    """Closed star-shaped rings in metres.

    Parameters
    ----------
    n : int
        Number of polygons.
    seed : int
        Seed of ``numpy.random.default_rng``.
    box_m : float
        Side of the square (metres) the polygon centres are drawn in.
    center_m : (float, float)
        Centre of the box, metric CRS (default: Nottingham, EPSG:27700).
    diameter_m : (float, float)
        Range of polygon diameters, metres.
    vertices : (int, int)
        Inclusive range of vertex counts.

    Returns
    -------
    list of numpy.ndarray of float64, shape (k + 1, 2)
        One closed ring (x, y in metres) per polygon.
    """
    rng = np.random.default_rng(seed)
    cx = center_m[0] + rng.uniform(-box_m / 2, box_m / 2, n)
    cy = center_m[1] + rng.uniform(-box_m / 2, box_m / 2, n)
    radius = rng.uniform(diameter_m[0], diameter_m[1], n) / 2.0
    counts = rng.integers(vertices[0], vertices[1] + 1, n)
    rings = []
    for i in range(n):
        k = int(counts[i])
        # Evenly spaced angles plus jitter below half a step stay sorted and
        # distinct, so the ring is simple.
        step = 2.0 * np.pi / k
        ang = np.arange(k) * step + rng.uniform(-0.45, 0.45, k) * step
        r = radius[i] * rng.uniform(0.55, 1.0, k)
        ring = np.column_stack([cx[i] + r * np.cos(ang), cy[i] + r * np.sin(ang)])
        rings.append(np.vstack([ring, ring[:1]]))
    return rings


def random_hotspots(
    n: int,
    seed: int,
    *,
    box_m: float = 20_000.0,
    center_m: tuple[float, float] = NOTTINGHAM_BNG_M,
    diameter_m: tuple[float, float] = (150.0, 600.0),
    vertices: tuple[int, int] = (8, 40),
    crs: str = "EPSG:27700",
    id_prefix: str = "HS",
) -> dict:
    """GeoJSON FeatureCollection (WGS84) of `n` random star-shaped hot spots.

    Same parameters as :func:`random_polygons_metric`; `crs` is the metric CRS
    the polygons are drawn in. Ids are ``f"{id_prefix}-{i:06d}"``; groups
    cycle over ten districts ``"D0" .. "D9"``.

    Returns
    -------
    dict
        A FeatureCollection accepted by :meth:`geo.HotspotSet.from_geojson_dict`.
    """
    rings = random_polygons_metric(
        n, seed, box_m=box_m, center_m=center_m, diameter_m=diameter_m, vertices=vertices
    )
    proj = MetricProjection(crs)
    # One projection call for all vertices; per-ring calls cost 100x more.
    lengths = [ring.shape[0] for ring in rings]
    allxy = np.concatenate(rings) if rings else np.zeros((0, 2))
    lon, lat = proj.to_wgs84(allxy[:, 0], allxy[:, 1])
    splits = np.cumsum(lengths)[:-1]
    features = []
    for i, coords in enumerate(np.split(np.column_stack([lon, lat]), splits)):
        coords[-1] = coords[0]  # exact closure after the round trip
        features.append({
            "type": "Feature",
            "id": f"{id_prefix}-{i:06d}",
            "properties": {"name": f"synthetic {i}", "group": f"D{i % 10}", "target_minutes": 15},
            "geometry": {"type": "Polygon", "coordinates": [coords.tolist()]},
        })
    return {"type": "FeatureCollection", "features": features}


def random_points(
    n: int,
    seed: int,
    *,
    box_m: float = 20_000.0,
    center_m: tuple[float, float] = NOTTINGHAM_BNG_M,
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random points in the square box, metres.

    Returns
    -------
    x_m, y_m : numpy.ndarray of float64, shape (n,)
    """
    rng = np.random.default_rng(seed)
    x = center_m[0] + rng.uniform(-box_m / 2, box_m / 2, n)
    y = center_m[1] + rng.uniform(-box_m / 2, box_m / 2, n)
    return x, y


def random_points_wgs84(n: int, seed: int, *, crs: str = "EPSG:27700", **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """:func:`random_points` projected to WGS84 (lon, lat degrees)."""
    x, y = random_points(n, seed, **kwargs)
    return MetricProjection(crs).to_wgs84(x, y)
