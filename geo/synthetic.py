"""Seeded synthetic hot spots, points and patrol tracks, for benchmarks, tests and ``hotspot-dwell bench``.

Hot spots are random star-shaped polygons (vertices at sorted random angles
around a centre, random radii), which are always simple and valid, placed in
a square box in British National Grid around Nottingham. Patrol tracks are
officers dwelling in hot spots and walking between them.
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


def patrol_tracks(
    centres_m: np.ndarray,
    n_officers: int,
    fixes_per_officer: int,
    seed: int,
    *,
    interval_s: float = 30.0,
    dwell_s: tuple[float, float] = (300.0, 1800.0),
    speed_mps: float = 1.4,
    error_m: float = 15.0,
    t0_ms: int = 1_711_800_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Officers on patrol: dwell in a hot spot, walk to another, dwell again.

    Each officer starts at a random point of its cycle, dwells 5-30 minutes
    at a hot spot centre (``centres_m``, metres), walks at ``speed_mps`` to
    the nearest-but-random next hot spot (one of the 8 nearest), and so on;
    radios report every ``interval_s`` (each officer with its own phase) with
    Gaussian error ``error_m``. Visits are then a few percent of fixes, as in
    the field, not one in six as officers jittering around cell edges give.

    Returns
    -------
    officer : int64 (n,) ; ts_ms : int64 (n,) ; x_m, y_m : float64 (n,)
        In time order (then by officer), ``n = n_officers * fixes_per_officer``.
    """
    rng = np.random.default_rng(seed)
    n_c = centres_m.shape[0]
    horizon_s = fixes_per_officer * interval_s + dwell_s[1]
    # Enough dwell+walk segments per officer to cover the horizon.
    n_seg = int(np.ceil(horizon_s / dwell_s[0])) + 2
    # Candidate next hot spots: the 8 nearest of each (a patrol route, not a city crossing).
    k = min(8, n_c - 1) if n_c > 1 else 1
    d2 = ((centres_m[:, None, :] - centres_m[None, :, :]) ** 2).sum(-1) if n_c <= 5000 else None
    if d2 is not None:
        np.fill_diagonal(d2, np.inf)
        near = np.argsort(d2, axis=1)[:, :k]
    else:
        near = rng.integers(0, n_c, (n_c, k))
    stops = np.empty((n_officers, n_seg), np.int64)
    stops[:, 0] = rng.integers(0, n_c, n_officers)
    for s in range(1, n_seg):
        stops[:, s] = near[stops[:, s - 1], rng.integers(0, k, n_officers)]
    dwell = rng.uniform(*dwell_s, (n_officers, n_seg))
    leg = np.linalg.norm(centres_m[stops[:, 1:]] - centres_m[stops[:, :-1]], axis=-1) / speed_mps
    # Timeline per officer: dwell_0, walk_0, dwell_1, walk_1, ... (seconds).
    durations = np.empty((n_officers, 2 * n_seg - 1))
    durations[:, 0::2] = dwell
    durations[:, 1::2] = leg
    ends = np.cumsum(durations, axis=1)
    offset = rng.uniform(0, dwell_s[1], n_officers)  # start somewhere in the first cycle
    phase = rng.uniform(0, interval_s, n_officers)
    t = offset[:, None] + phase[:, None] + np.arange(fixes_per_officer)[None, :] * interval_s
    seg = np.minimum((ends[:, None, :] <= t[:, :, None]).sum(-1), durations.shape[1] - 1)
    start = np.take_along_axis(np.concatenate([np.zeros((n_officers, 1)), ends[:, :-1]], axis=1), seg, axis=1)
    frac = np.clip((t - start) / np.take_along_axis(durations, seg, axis=1), 0.0, 1.0)
    a = np.take_along_axis(stops, seg // 2, axis=1)
    b = np.take_along_axis(stops, np.minimum(seg // 2 + 1, n_seg - 1), axis=1)
    walking = (seg % 2 == 1)[..., None]
    pa, pb = centres_m[a], centres_m[b]
    pos = np.where(walking, pa + (pb - pa) * frac[..., None], pa)
    pos = pos + rng.normal(0.0, error_m, pos.shape)
    officer = np.repeat(np.arange(n_officers), fixes_per_officer)
    ts = (t0_ms + (t - offset[:, None]) * 1000).astype(np.int64).ravel()
    order = np.lexsort((officer, ts))
    return officer[order], ts[order], pos[..., 0].ravel()[order], pos[..., 1].ravel()[order]
