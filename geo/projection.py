"""WGS84 <-> metric projection, one pyproj Transformer per CRS pair.

Distances and the dwell geometry are computed in a metric CRS (British
National Grid, EPSG:27700, for Great Britain); fixes arrive as WGS84
longitude/latitude in degrees.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyproj

WGS84 = "EPSG:4326"


@functools.lru_cache(maxsize=32)
def transformer(src_crs: str, dst_crs: str) -> pyproj.Transformer:
    """Return the cached ``always_xy`` Transformer from `src_crs` to `dst_crs`.

    Building a Transformer costs milliseconds (PROJ database lookups), so each
    CRS pair is built once per process.

    Parameters
    ----------
    src_crs, dst_crs : str
        Anything ``pyproj.CRS.from_user_input`` accepts, e.g. ``"EPSG:27700"``.

    Returns
    -------
    pyproj.Transformer
        Axis order is always (x/lon, y/lat).
    """
    return pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)


# PROJ releases the GIL while it transforms, so large batches are split over
# the cores; a Transformer must not be shared between threads, hence one per
# thread and CRS pair.
_PARALLEL_MIN_POINTS = 200_000
_THREADS = max(1, min(4, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_local = threading.local()


def _thread_transformer(src_crs: str, dst_crs: str) -> pyproj.Transformer:
    cache = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    key = (src_crs, dst_crs)
    if key not in cache:
        cache[key] = pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    return cache[key]


def _transform_parallel(src_crs: str, dst_crs: str, a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    if a.size < _PARALLEL_MIN_POINTS or _THREADS == 1:
        return _transform(transformer(src_crs, dst_crs), a, b)
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="proj")
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"coordinate arrays differ in shape: {a.shape} vs {b.shape}")
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    cuts = np.linspace(0, flat_a.size, _THREADS + 1).astype(np.int64)
    parts = [_pool.submit(lambda i, j: _transform(_thread_transformer(src_crs, dst_crs), flat_a[i:j], flat_b[i:j]),
                          cuts[k], cuts[k + 1]) for k in range(_THREADS)]
    done = [p.result() for p in parts]
    x = np.concatenate([d[0] for d in done]).reshape(a.shape)
    y = np.concatenate([d[1] for d in done]).reshape(a.shape)
    return x, y


def _transform(tr: pyproj.Transformer, a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"coordinate arrays differ in shape: {a.shape} vs {b.shape}")
    if a.size == 1:
        # pyproj tries its scalar path first; one-element arrays there raise
        # NumPy's array-to-scalar DeprecationWarning.
        xs, ys = tr.transform(float(a.reshape(-1)[0]), float(b.reshape(-1)[0]), errcheck=False)
        x, y = np.full(a.shape, xs), np.full(a.shape, ys)
    else:
        # Copies, so the caller's arrays are never written to.
        x, y = tr.transform(a.copy(), b.copy(), errcheck=False)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # PROJ answers inf for points it cannot project (lat 100, NaN); callers
    # test NaN only, so every failure becomes NaN in both outputs.
    bad = ~(np.isfinite(x) & np.isfinite(y) & np.isfinite(a) & np.isfinite(b))
    if bad.any():
        x = np.where(bad, np.nan, x)
        y = np.where(bad, np.nan, y)
    return x, y


@dataclass(frozen=True)
class MetricProjection:
    """Projection between WGS84 degrees and a projected, metric CRS.

    Parameters
    ----------
    crs : str, default "EPSG:27700"
        A projected CRS with metre units (British National Grid by default).

    Raises
    ------
    ValueError
        If `crs` is unknown, not projected or not in metres.
    """

    crs: str = "EPSG:27700"
    _forward: pyproj.Transformer = field(init=False, repr=False, compare=False)
    _inverse: pyproj.Transformer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            crs = pyproj.CRS.from_user_input(self.crs)
        except pyproj.exceptions.CRSError as exc:
            raise ValueError(f"unknown CRS {self.crs!r}: {exc}") from None
        units = {ax.unit_name for ax in crs.axis_info}
        if not crs.is_projected or units - {"metre"}:
            raise ValueError(
                f"CRS {self.crs!r} is not a projected CRS in metres "
                f"(projected={crs.is_projected}, units={sorted(units)})"
            )
        object.__setattr__(self, "_forward", transformer(WGS84, self.crs))
        object.__setattr__(self, "_inverse", transformer(self.crs, WGS84))

    def to_metric(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Project WGS84 degrees to metric coordinates.

        Parameters
        ----------
        lon, lat : array_like of float64, same shape
            Longitude and latitude in degrees (WGS84).

        Returns
        -------
        x_m, y_m : numpy.ndarray of float64, same shape as `lon`
            Easting and northing in metres. NaN where the input is NaN or
            cannot be projected.
        """
        return _transform_parallel(WGS84, self.crs, lon, lat)

    def to_wgs84(self, x_m, y_m) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_metric`.

        Parameters
        ----------
        x_m, y_m : array_like of float64, same shape
            Easting and northing in metres.

        Returns
        -------
        lon, lat : numpy.ndarray of float64, same shape as `x_m`
            Degrees (WGS84); NaN where the input is NaN.
        """
        return _transform(self._inverse, x_m, y_m)
