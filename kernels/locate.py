"""Locate points in polygons: classified cell grid, exact refine step.

Fast path (``margin_m`` up to the build margin): a fine uniform grid whose
cells were classified at build time, per polygon part (see
:func:`kernels.cell_grid.classify_cells`, sorted by :func:`geo.packing.pack_polygons`):

* *covered*: the cell lies wholly inside the part, so every point in it is
  inside (and within any margin) with no test at all;
* *boundary*: some edge of the part crosses the cell; the crossing-number test
  runs over only the edges that can cross a rightward ray from inside the
  cell (edges in the cell's row band, not wholly left of the cell), plus a
  stored parity for the edges wholly right of the cell that span the band;
* *near*: the cell lies outside the part but within the build margin; its key
  (a lower bound of the cell-to-part distance) lets a query skip it.

Entries of a cell are sorted by key, so a query stops at the first key above
its margin (margin 0 visits only covered and boundary entries). The distance
test of the margin query runs over a per-entry edge list pruned to the edges
that can be nearest to some point of the cell.

Fallback (larger margins, ``use_grid=False``): the packed R-tree of
:mod:`kernels.rtree_packed` yields the parts whose box, grown by ``margin_m``,
contains the point; the refine step runs the crossing-number test over all
rings of the part and, when outside and ``margin_m > 0``, the distance test.

Boundary rule: the crossing-number test is half-open (PNPOLY): an edge counts
when ``(y_i > py) != (y_j > py)``, and a point exactly on an edge is inside on
some edges and outside on others, so two polygons sharing an edge never both
claim a point on it. With ``margin_m > 0`` a boundary point is within the
margin and is reported either way. Both paths give the same answer: the grid
leaves out only edges that cannot change the result, and its classification
keeps a slack (millimetres) far above floating-point rounding.
"""

from __future__ import annotations


import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS
from kernels.polygon_tests import add_hit, crosses, edge_dist_sq, grown, point_in_rings, point_near_rings
from kernels.rtree_packed import PackedPolygons, _query_point, check_margin, check_points, index_args

__all__ = ["locate_points", "point_in_part", "point_near_part"]


@njit(inline="always", **JIT_OPTIONS)
def _entry_inside(px, py, e, vertex_x, vertex_y, entry_parity, entry_edges, entry_near, cell_edges):
    """Crossing test of a grid entry: stored parity, then its own edge list."""
    inside = (entry_parity[e] & 1) != 0
    for q in range(entry_edges[e], entry_near[e]):
        v = cell_edges[q]
        inside ^= crosses(px, py, vertex_x[v], vertex_y[v], vertex_x[v + 1], vertex_y[v + 1])
    return inside


@njit(inline="always", **JIT_OPTIONS)
def _entry_near(px, py, margin_m, e, vertex_x, vertex_y, ring_offsets, part_ring_offsets, box,
                entry_part, entry_parity, entry_edges, entry_near, cell_edges):
    """Distance test of a grid entry: its pruned edge list, or the whole part (flag 2).

    The part box grown by the margin rejects most points first (cells are
    coarser than the margin).
    """
    k = entry_part[e]
    if not (box[0][k] - margin_m <= px and px <= box[2][k] + margin_m
            and box[1][k] - margin_m <= py and py <= box[3][k] + margin_m):
        return False
    margin_sq = margin_m * margin_m
    if entry_parity[e] & 2:
        return point_near_rings(px, py, margin_sq, vertex_x, vertex_y, ring_offsets,
                                part_ring_offsets[k], part_ring_offsets[k + 1])
    for q in range(entry_near[e], entry_edges[e + 1]):
        v = cell_edges[q]
        if edge_dist_sq(px, py, vertex_x[v], vertex_y[v], vertex_x[v + 1], vertex_y[v + 1]) <= margin_sq:
            return True
    return False


@njit(**JIT_OPTIONS)
def _locate_cells_kernel(
    x, y, margins, vertex_x, vertex_y, ring_offsets, part_ring_offsets, part_hotspot, part_box,
    origin_x, origin_y, inv_w, inv_h, nx, ny, cell_qkey, qkey_step,
    cell_offsets, entry_part, entry_key, entry_parity, entry_edges, entry_near, cell_edges,
):
    n = x.shape[0]
    per_point = margins.shape[0] > 1
    margin_m = margins[0]
    margin_sq = margin_m * margin_m
    n_hot = max(part_hotspot.shape[0], 1)
    hit_hot = np.empty(n_hot, dtype=np.int64)
    hit_in = np.empty(n_hot, dtype=np.bool_)
    # Most fixes hit zero or one hot spot; grow by doubling past that.
    out_fix = np.empty(n // 4 + 16, dtype=np.int64)
    out_hot = np.empty(n // 4 + 16, dtype=np.int64)
    out_in = np.empty(n // 4 + 16, dtype=np.bool_)
    m = 0
    for i in range(n):
        px = x[i]
        py = y[i]
        if per_point:
            margin_m = margins[i]
            margin_sq = margin_m * margin_m
        fx = (px - origin_x) * inv_w
        fy = (py - origin_y) * inv_h
        # Written as "not (... and ...)" so NaN falls out here.
        if not (fx >= 0.0 and fy >= 0.0 and fx < nx and fy < ny):
            continue
        cell = int(fy) * nx + int(fx)
        # One byte per cell (small enough to stay in cache) rejects most
        # points before the entry lists are touched.
        if cell_qkey[cell] * qkey_step > margin_m:
            continue
        e0 = cell_offsets[cell]
        e1 = cell_offsets[cell + 1]
        if e0 == e1:  # only when the margin exceeds the build margin
            continue
        if m + e1 - e0 > out_fix.shape[0]:
            out_fix = grown(out_fix, m + e1 - e0)
            out_hot = grown(out_hot, m + e1 - e0)
            out_in = grown(out_in, m + e1 - e0)
        if e0 + 1 == e1 or entry_key[e0 + 1] > margin_m:
            # The usual case, one entry in reach: no hit list, and the pair is
            # written unconditionally and kept only on a hit (no branch).
            inside = _entry_inside(px, py, e0, vertex_x, vertex_y, entry_parity, entry_edges, entry_near,
                                   cell_edges)
            hit = inside
            if not inside and margin_sq > 0.0:
                hit = _entry_near(px, py, margin_m, e0, vertex_x, vertex_y, ring_offsets, part_ring_offsets,
                                  part_box, entry_part, entry_parity, entry_edges, entry_near, cell_edges)
            out_fix[m] = i
            out_hot[m] = part_hotspot[entry_part[e0]]
            out_in[m] = inside
            m += hit
            continue
        nh = 0
        for e in range(e0, e1):
            if entry_key[e] > margin_m:
                break  # keys ascend: no later entry is within the margin
            inside = _entry_inside(px, py, e, vertex_x, vertex_y, entry_parity, entry_edges, entry_near,
                                   cell_edges)
            if not inside and not (margin_sq > 0.0 and _entry_near(
                px, py, margin_m, e, vertex_x, vertex_y, ring_offsets, part_ring_offsets, part_box,
                entry_part, entry_parity, entry_edges, entry_near, cell_edges,
            )):
                continue
            k = entry_part[e]
            nh = add_hit(hit_hot, hit_in, nh, part_hotspot[k], inside)
        for q in range(nh):  # room reserved above: nh <= e1 - e0
            out_fix[m] = i
            out_hot[m] = hit_hot[q]
            out_in[m] = hit_in[q]
            m += 1
    return out_fix[:m].copy(), out_hot[:m].copy(), out_in[:m].copy()


@njit(**JIT_OPTIONS)
def _locate_tree_kernel(
    x, y, margins,
    vertex_x, vertex_y, ring_offsets, part_ring_offsets, part_hotspot,
    node_min_x, node_min_y, node_max_x, node_max_y, node_child_start, node_child_end, n_parts, stack_size,
):
    n = x.shape[0]
    per_point = margins.shape[0] > 1
    margin_m = margins[0]
    margin_sq = margin_m * margin_m
    stack = np.empty(stack_size, dtype=np.int64)
    cand = np.empty(max(n_parts, 1), dtype=np.int64)
    hit_hot = np.empty(max(n_parts, 1), dtype=np.int64)
    hit_in = np.empty(max(n_parts, 1), dtype=np.bool_)
    out_fix = np.empty(n // 4 + 16, dtype=np.int64)
    out_hot = np.empty(n // 4 + 16, dtype=np.int64)
    out_in = np.empty(n // 4 + 16, dtype=np.bool_)
    m = 0
    for i in range(n):
        px = x[i]
        py = y[i]
        if per_point:
            margin_m = margins[i]
            margin_sq = margin_m * margin_m
        c = _query_point(px, py, margin_m, node_min_x, node_min_y, node_max_x, node_max_y,
                         node_child_start, node_child_end, n_parts, stack, cand)
        nh = 0
        for j in range(c):
            k = cand[j]
            r0 = part_ring_offsets[k]
            r1 = part_ring_offsets[k + 1]
            inside = point_in_rings(px, py, vertex_x, vertex_y, ring_offsets, r0, r1)
            if not inside:
                if margin_sq <= 0.0 or not point_near_rings(
                    px, py, margin_sq, vertex_x, vertex_y, ring_offsets, r0, r1
                ):
                    continue
            nh = add_hit(hit_hot, hit_in, nh, part_hotspot[k], inside)
        if nh == 0:
            continue
        if m + nh > out_fix.shape[0]:
            out_fix = grown(out_fix, m + nh)
            out_hot = grown(out_hot, m + nh)
            out_in = grown(out_in, m + nh)
        for q in range(nh):
            out_fix[m] = i
            out_hot[m] = hit_hot[q]
            out_in[m] = hit_in[q]
            m += 1
    return out_fix[:m].copy(), out_hot[:m].copy(), out_in[:m].copy()


def locate_points(x_m, y_m, packed: PackedPolygons, margin_m=0.0, use_grid: bool = True):
    """Every (point, hot spot) pair with the point within `margin_m` of the hot spot.

    Parameters
    ----------
    x_m, y_m : array_like of float64, shape (n,)
        Point coordinates in metres, in the CRS of `packed`. NaN gives no pairs.
    packed : PackedPolygons
        Flat polygons and packed R-tree (see :func:`geo.packing.pack_polygons`).
    margin_m : float or array_like of float64, shape (n,), default 0.0
        Distance in metres, >= 0, for every point or per point. A pair is
        reported when the point lies in the hot spot or its distance to the
        hot spot is <= its margin.
    use_grid : bool, default True
        Use the classified cell grid when every margin is <= ``packed.grid_margin_m``;
        False forces the R-tree traversal (same result; tests compare both).

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
    margins = check_margins(margin_m, x.shape[0])
    margin = float(margins.max()) if margins.size else 0.0
    p = packed
    if use_grid and margin <= p.grid_margin_m:
        return _locate_cells_kernel(
            x, y, margins, p.vertex_x, p.vertex_y, p.ring_offsets, p.part_ring_offsets, p.part_hotspot,
            (p.node_min_x, p.node_min_y, p.node_max_x, p.node_max_y), float(p.cell_origin_x), float(p.cell_origin_y), 1.0 / p.cell_w_m, 1.0 / p.cell_h_m,
            int(p.cell_nx), int(p.cell_ny),
            p.cell_qkey, float(p.cell_qkey_step),
            p.cell_offsets, p.entry_part, p.entry_key, p.entry_parity, p.entry_edges, p.entry_near,
            p.cell_edges,
        )
    tree = index_args(p, margin, False)[1:9]  # node boxes, children, n_parts, stack size
    return _locate_tree_kernel(
        x, y, margins, p.vertex_x, p.vertex_y, p.ring_offsets, p.part_ring_offsets, p.part_hotspot, *tree,
    )


def check_margins(margin_m, n: int) -> np.ndarray:
    """One margin for every point (a length-1 array) or one per point, float64 metres; ValueError unless
    finite and >= 0."""
    if np.ndim(margin_m) == 0:
        return np.array([check_margin(margin_m)])
    m = np.ascontiguousarray(margin_m, dtype=np.float64)
    if m.shape != (n,):
        raise ValueError(f"margin_m must be one number or one per point ({n}), got shape {m.shape}")
    if not m.size:
        return np.zeros(1)  # no points: the kernels still read one margin
    if not (np.all(np.isfinite(m)) and m.min() >= 0.0):
        raise ValueError("every margin_m must be finite and >= 0 metres")
    return m


def point_in_part(px: float, py: float, packed: PackedPolygons, part: int) -> bool:
    """Refine step alone: is (px, py) in part `part` (packed leaf order), ignoring its box?"""
    if not 0 <= part < packed.n_parts:
        raise ValueError(f"part must be in [0, {packed.n_parts}), got {part}")
    return bool(point_in_rings(
        float(px), float(py), packed.vertex_x, packed.vertex_y, packed.ring_offsets,
        packed.part_ring_offsets[part], packed.part_ring_offsets[part + 1],
    ))


def point_near_part(px: float, py: float, packed: PackedPolygons, part: int, margin_m: float) -> bool:
    """Refine step alone: is some edge of part `part` within `margin_m` metres of (px, py)?"""
    if not 0 <= part < packed.n_parts:
        raise ValueError(f"part must be in [0, {packed.n_parts}), got {part}")
    m = check_margin(margin_m)
    return bool(point_near_rings(
        float(px), float(py), m * m, packed.vertex_x, packed.vertex_y, packed.ring_offsets,
        packed.part_ring_offsets[part], packed.part_ring_offsets[part + 1],
    ))
