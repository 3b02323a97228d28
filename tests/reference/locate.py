"""Obviously-correct locate: the `rtree` package for candidates, shapely for the test.

Independent of kernels/: boxes go into a libspatialindex R-tree, each
candidate's whole hot spot geometry (MultiPolygon included) is tested with
shapely ``contains`` and ``distance``, one point at a time.
"""

from __future__ import annotations

import math

import numpy as np
import rtree
import shapely


def _index(boxes: np.ndarray) -> rtree.index.Index:
    ids = np.arange(boxes.shape[0], dtype=np.int64)
    if boxes.shape[0] == 0:
        return rtree.index.Index()
    return rtree.index.Index((ids, boxes[:, :2].copy(), boxes[:, 2:].copy()))


def candidates_reference(x, y, part_boxes: np.ndarray, margin_m: float = 0.0):
    """(fix, part) pairs whose part box grown by `margin_m` contains the point, sorted."""
    idx = _index(part_boxes)
    fix, part = [], []
    for i, (px, py) in enumerate(zip(np.asarray(x, float), np.asarray(y, float))):
        if math.isnan(px) or math.isnan(py):
            continue
        for k in sorted(idx.intersection((px - margin_m, py - margin_m, px + margin_m, py + margin_m))):
            fix.append(i)
            part.append(k)
    return np.asarray(fix, dtype=np.int64), np.asarray(part, dtype=np.int64)


def locate_reference(x, y, geometries_metric, margin_m: float = 0.0):
    """(fix, hot spot, inside) for distance(point, hot spot) <= margin_m, sorted.

    Parameters
    ----------
    x, y : array_like of float64, shape (n,)
        Points in metres.
    geometries_metric : sequence of shapely Polygon/MultiPolygon
    margin_m : float

    Returns
    -------
    fix_index, hotspot_index : numpy.ndarray of int64
    inside : numpy.ndarray of bool
    """
    geoms = np.asarray(geometries_metric, dtype=object)
    parts, part_hot = shapely.get_parts(geoms, return_index=True)
    idx = _index(shapely.bounds(parts).reshape(-1, 4))
    fix, hot, ins = [], [], []
    for i, (px, py) in enumerate(zip(np.asarray(x, float), np.asarray(y, float))):
        if math.isnan(px) or math.isnan(py):
            continue
        pt = shapely.Point(px, py)
        hits = {}
        for k in idx.intersection((px - margin_m, py - margin_m, px + margin_m, py + margin_m)):
            h = int(part_hot[k])
            g = geoms[h]
            inside = bool(g.contains(pt))
            if inside or (margin_m > 0 and g.distance(pt) <= margin_m):
                hits[h] = inside
        for h in sorted(hits):
            fix.append(i)
            hot.append(h)
            ins.append(hits[h])
    return (np.asarray(fix, dtype=np.int64), np.asarray(hot, dtype=np.int64),
            np.asarray(ins, dtype=bool))
