"""Locate points in polygons: packed R-tree coarse step, exact refine step.

For each point the packed R-tree (:mod:`kernels.rtree_packed`) yields the
parts whose box, grown by ``margin_m``, contains it; the refine step then runs
a crossing-number point-in-polygon test over all rings of the part (exterior
and holes together) and, when the point is outside and ``margin_m > 0``, a
point-to-edge distance test.

Boundary rule: the crossing-number test is half-open (PNPOLY): an edge counts
when ``(y_i > py) != (y_j > py)``, and a point exactly on an edge is inside on
some edges and outside on others, so two polygons sharing an edge never both
claim a point on it. With ``margin_m > 0`` a boundary point is within the
margin and is reported either way.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS
from kernels.rtree_packed import PackedPolygons, _query_point, check_margin, check_points, index_args

__all__ = ["locate_points", "point_in_part", "point_near_part"]


@njit(inline="always", **JIT_OPTIONS)
def _point_in_part(px, py, vertex_x, vertex_y, ring_offsets, ring_start, ring_end):
    """Crossing-number test over every ring of one part (holes flip parity).

    Edge (i, j) is crossed when it straddles ``py`` (half-open) and the point
    lies strictly left of it. The side test is the sign of a cross product,
    not the textbook division, and is folded in without branches: random
    points make the branch a coin toss and the division is slow.
    """
    inside = False
    for r in range(ring_start, ring_end):
        for i in range(ring_offsets[r], ring_offsets[r + 1] - 1):
            xi = vertex_x[i]
            yi = vertex_y[i]
            xj = vertex_x[i + 1]
            yj = vertex_y[i + 1]
            side = (xj - xi) * (py - yi) - (px - xi) * (yj - yi)
            inside ^= ((yi > py) != (yj > py)) & ((side > 0.0) == (yj > yi)) & (side != 0.0)
    return inside


@njit(inline="always", **JIT_OPTIONS)
def _point_near_part(px, py, margin_sq, vertex_x, vertex_y, ring_offsets, ring_start, ring_end):
    """True when some edge of the part lies within sqrt(margin_sq) of the point."""
    for r in range(ring_start, ring_end):
        lo = ring_offsets[r]
        hi = ring_offsets[r + 1] - 1
        for i in range(lo, hi):
            xi = vertex_x[i]
            yi = vertex_y[i]
            dx = vertex_x[i + 1] - xi
            dy = vertex_y[i + 1] - yi
            wx = px - xi
            wy = py - yi
            len_sq = dx * dx + dy * dy
            t = 0.0
            if len_sq > 0.0:
                t = (wx * dx + wy * dy) / len_sq
                if t < 0.0:
                    t = 0.0
                elif t > 1.0:
                    t = 1.0
            ex = wx - t * dx
            ey = wy - t * dy
            if ex * ex + ey * ey <= margin_sq:
                return True
    return False


@njit(**JIT_OPTIONS)
def _locate_kernel(
    x, y, margin_m,
    vertex_x, vertex_y, ring_offsets, part_ring_offsets, part_hotspot,
    use_grid, node_min_x, node_min_y, node_max_x, node_max_y,
    node_child_start, node_child_end, n_parts, stack_size,
    grid_origin_x, grid_origin_y, grid_inv_cell, grid_nx, grid_ny,
    grid_cell_offsets, grid_cell_items,
):
    n = x.shape[0]
    margin_sq = margin_m * margin_m
    stack = np.empty(stack_size, dtype=np.int64)
    cand = np.empty(max(n_parts, 1), dtype=np.int64)
    # Per-point hits, kept sorted by hot spot so output needs no global sort.
    hit_hot = np.empty(max(n_parts, 1), dtype=np.int64)
    hit_in = np.empty(max(n_parts, 1), dtype=np.bool_)
    # Most fixes hit zero or one hot spot; grow by doubling past that.
    cap = n // 2 + 16
    out_fix = np.empty(cap, dtype=np.int64)
    out_hot = np.empty(cap, dtype=np.int64)
    out_in = np.empty(cap, dtype=np.bool_)
    m = 0
    for i in range(n):
        px = x[i]
        py = y[i]
        if use_grid:
            # Hand-inlined _grid_query_point: a call passing a dozen arrays
            # costs ~40 ns in reference counting, more than the lookup itself.
            fx = (px - grid_origin_x) * grid_inv_cell
            fy = (py - grid_origin_y) * grid_inv_cell
            if not (fx >= 0.0 and fy >= 0.0 and fx < grid_nx and fy < grid_ny):
                continue
            cell = int(fy) * grid_nx + int(fx)
            x0 = px - margin_m
            x1 = px + margin_m
            y0 = py - margin_m
            y1 = py + margin_m
            c = 0
            for j in range(grid_cell_offsets[cell], grid_cell_offsets[cell + 1]):
                k = grid_cell_items[j]
                hit = ((node_min_x[k] <= x1) & (node_max_x[k] >= x0)
                       & (node_min_y[k] <= y1) & (node_max_y[k] >= y0))
                cand[c] = k
                c += hit
        else:
            c = _query_point(px, py, margin_m, node_min_x, node_min_y, node_max_x, node_max_y,
                             node_child_start, node_child_end, n_parts, stack, cand)
        if c == 0:
            continue
        nh = 0
        for j in range(c):
            k = cand[j]
            r0 = part_ring_offsets[k]
            r1 = part_ring_offsets[k + 1]
            inside = _point_in_part(px, py, vertex_x, vertex_y, ring_offsets, r0, r1)
            if not inside:
                if margin_sq <= 0.0 or not _point_near_part(
                    px, py, margin_sq, vertex_x, vertex_y, ring_offsets, r0, r1
                ):
                    continue
            h = part_hotspot[k]
            # Insertion into the small sorted hit list; parts of one
            # MultiPolygon merge into one hit, inside if any part contains it.
            pos = nh
            while pos > 0 and hit_hot[pos - 1] > h:
                pos -= 1
            if pos > 0 and hit_hot[pos - 1] == h:
                hit_in[pos - 1] = hit_in[pos - 1] or inside
                continue
            for q in range(nh, pos, -1):
                hit_hot[q] = hit_hot[q - 1]
                hit_in[q] = hit_in[q - 1]
            hit_hot[pos] = h
            hit_in[pos] = inside
            nh += 1
        if nh == 0:
            continue
        if m + nh > cap:
            cap = max(2 * cap, m + nh)
            grown_fix = np.empty(cap, dtype=np.int64)
            grown_hot = np.empty(cap, dtype=np.int64)
            grown_in = np.empty(cap, dtype=np.bool_)
            grown_fix[:m] = out_fix[:m]
            grown_hot[:m] = out_hot[:m]
            grown_in[:m] = out_in[:m]
            out_fix = grown_fix
            out_hot = grown_hot
            out_in = grown_in
        for q in range(nh):
            out_fix[m] = i
            out_hot[m] = hit_hot[q]
            out_in[m] = hit_in[q]
            m += 1
    return out_fix[:m].copy(), out_hot[:m].copy(), out_in[:m].copy()


def locate_points(x_m, y_m, packed: PackedPolygons, margin_m: float = 0.0, use_grid: bool = True):
    """Every (point, hot spot) pair with the point within `margin_m` of the hot spot.

    Parameters
    ----------
    x_m, y_m : array_like of float64, shape (n,)
        Point coordinates in metres, in the CRS of `packed`. NaN gives no pairs.
    packed : PackedPolygons
        Flat polygons and packed R-tree (see :func:`geo.packing.pack_polygons`).
    margin_m : float, default 0.0
        Distance in metres, >= 0. A pair is reported when the point lies in
        the hot spot or its distance to the hot spot is <= `margin_m`.
    use_grid : bool, default True
        Use the bucket grid when `margin_m` allows; False forces the R-tree
        traversal (same result; tests compare both).

    Returns
    -------
    fix_index : numpy.ndarray of int64, shape (n_pairs,)
        Index of the point.
    hotspot_index : numpy.ndarray of int64, shape (n_pairs,)
        Index of the hot spot (``packed.part_hotspot`` space).
    inside : numpy.ndarray of bool, shape (n_pairs,)
        True when the point lies in the polygon itself (margin 0).

    Pairs are unique and sorted by (fix_index, hotspot_index); overlapping hot
    spots are all reported.

    Raises
    ------
    ValueError
        On arrays of the wrong shape or a negative or non-finite margin.
    """
    x, y = check_points(x_m, y_m)
    margin = check_margin(margin_m)
    return _locate_kernel(
        x, y, margin,
        packed.vertex_x, packed.vertex_y, packed.ring_offsets, packed.part_ring_offsets,
        packed.part_hotspot, *index_args(packed, margin, use_grid),
    )


def point_in_part(px: float, py: float, packed: PackedPolygons, part: int) -> bool:
    """Refine step alone: is (px, py) in part `part`, ignoring its box?

    Parameters
    ----------
    px, py : float
        Point in metres.
    packed : PackedPolygons
    part : int
        Part index in packed (leaf) order, ``0 <= part < packed.n_parts``.

    Returns
    -------
    bool
        Crossing-number result over the part's exterior and holes.
    """
    if not 0 <= part < packed.n_parts:
        raise ValueError(f"part must be in [0, {packed.n_parts}), got {part}")
    return bool(_point_in_part(
        float(px), float(py), packed.vertex_x, packed.vertex_y, packed.ring_offsets,
        packed.part_ring_offsets[part], packed.part_ring_offsets[part + 1],
    ))


def point_near_part(px: float, py: float, packed: PackedPolygons, part: int, margin_m: float) -> bool:
    """Refine step alone: is some edge of part `part` within `margin_m` metres of (px, py)?"""
    if not 0 <= part < packed.n_parts:
        raise ValueError(f"part must be in [0, {packed.n_parts}), got {part}")
    m = check_margin(margin_m)
    return bool(_point_near_part(
        float(px), float(py), m * m, packed.vertex_x, packed.vertex_y, packed.ring_offsets,
        packed.part_ring_offsets[part], packed.part_ring_offsets[part + 1],
    ))
