"""Locate points in polygons: classified cell grid, exact refine step.

Fast path (``margin_m`` up to the build margin): a fine uniform grid whose
cells were classified at build time, per polygon part (see
:func:`build_cell_index`):

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

import math

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS
from kernels.rtree_packed import PackedPolygons, _query_point, check_margin, check_points, index_args

__all__ = ["build_cell_index", "locate_points", "point_in_part", "point_near_part"]


@njit(inline="always", **JIT_OPTIONS)
def _crosses(px, py, xi, yi, xj, yj):
    """Does edge (i, j) cross the rightward ray from (px, py)? (PNPOLY, half-open).

    The side test is the sign of a cross product, not the textbook division,
    folded in without branches: random points make the branch a coin toss.
    """
    side = (xj - xi) * (py - yi) - (px - xi) * (yj - yi)
    return ((yi > py) != (yj > py)) & ((side > 0.0) == (yj > yi)) & (side != 0.0)


@njit(inline="always", **JIT_OPTIONS)
def _edge_dist_sq(px, py, xi, yi, xj, yj):
    """Squared distance from (px, py) to segment (i, j)."""
    dx = xj - xi
    dy = yj - yi
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
    return ex * ex + ey * ey


@njit(inline="always", **JIT_OPTIONS)
def _point_in_part(px, py, vertex_x, vertex_y, ring_offsets, ring_start, ring_end):
    """Crossing-number test over every ring of one part (holes flip parity)."""
    inside = False
    for r in range(ring_start, ring_end):
        for i in range(ring_offsets[r], ring_offsets[r + 1] - 1):
            inside ^= _crosses(px, py, vertex_x[i], vertex_y[i], vertex_x[i + 1], vertex_y[i + 1])
    return inside


@njit(inline="always", **JIT_OPTIONS)
def _point_near_part(px, py, margin_sq, vertex_x, vertex_y, ring_offsets, ring_start, ring_end):
    """True when some edge of the part lies within sqrt(margin_sq) of the point."""
    for r in range(ring_start, ring_end):
        for i in range(ring_offsets[r], ring_offsets[r + 1] - 1):
            if _edge_dist_sq(px, py, vertex_x[i], vertex_y[i], vertex_x[i + 1], vertex_y[i + 1]) <= margin_sq:
                return True
    return False


@njit(inline="always", **JIT_OPTIONS)
def _add_hit(hit_hot, hit_in, nh, h, inside):
    """Insert hot spot `h` into the small sorted hit list; returns the new length.

    Parts of one MultiPolygon merge into one hit, inside if any part contains it.
    """
    pos = nh
    while pos > 0 and hit_hot[pos - 1] > h:
        pos -= 1
    if pos > 0 and hit_hot[pos - 1] == h:
        hit_in[pos - 1] = hit_in[pos - 1] or inside
        return nh
    for q in range(nh, pos, -1):
        hit_hot[q] = hit_hot[q - 1]
        hit_in[q] = hit_in[q - 1]
    hit_hot[pos] = h
    hit_in[pos] = inside
    return nh + 1


@njit(inline="always", **JIT_OPTIONS)
def _grown(a, need):
    """Copy of `a` with room for at least `need` items (capacity doubles)."""
    b = np.empty(max(2 * a.shape[0], need), dtype=a.dtype)
    b[:a.shape[0]] = a
    return b


@njit(**JIT_OPTIONS)
def _locate_cells_kernel(
    x, y, margin_m, vertex_x, vertex_y, part_hotspot,
    origin_x, origin_y, inv_cell, nx, ny,
    cell_offsets, entry_part, entry_key, entry_parity, entry_edges, entry_near, cell_edges,
):
    n = x.shape[0]
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
        fx = (px - origin_x) * inv_cell
        fy = (py - origin_y) * inv_cell
        # Written as "not (... and ...)" so NaN falls out here.
        if not (fx >= 0.0 and fy >= 0.0 and fx < nx and fy < ny):
            continue
        cell = int(fy) * nx + int(fx)
        e0 = cell_offsets[cell]
        e1 = cell_offsets[cell + 1]
        nh = 0
        for e in range(e0, e1):
            if entry_key[e] > margin_m:
                break  # keys ascend: no later entry is within the margin
            inside = entry_parity[e] != 0
            q0 = entry_edges[e]
            q1 = entry_near[e]
            for q in range(q0, q1):
                v = cell_edges[q]
                inside ^= _crosses(px, py, vertex_x[v], vertex_y[v], vertex_x[v + 1], vertex_y[v + 1])
            if not inside:
                if margin_sq <= 0.0:
                    continue
                near = False
                for q in range(q1, entry_edges[e + 1]):
                    v = cell_edges[q]
                    if _edge_dist_sq(px, py, vertex_x[v], vertex_y[v],
                                     vertex_x[v + 1], vertex_y[v + 1]) <= margin_sq:
                        near = True
                        break
                if not near:
                    continue
            nh = _add_hit(hit_hot, hit_in, nh, part_hotspot[entry_part[e]], inside)
        if nh == 0:
            continue
        if m + nh > out_fix.shape[0]:
            out_fix = _grown(out_fix, m + nh)
            out_hot = _grown(out_hot, m + nh)
            out_in = _grown(out_in, m + nh)
        for q in range(nh):
            out_fix[m] = i
            out_hot[m] = hit_hot[q]
            out_in[m] = hit_in[q]
            m += 1
    return out_fix[:m].copy(), out_hot[:m].copy(), out_in[:m].copy()


@njit(**JIT_OPTIONS)
def _locate_tree_kernel(
    x, y, margin_m,
    vertex_x, vertex_y, ring_offsets, part_ring_offsets, part_hotspot,
    node_min_x, node_min_y, node_max_x, node_max_y, node_child_start, node_child_end, n_parts, stack_size,
):
    n = x.shape[0]
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
        c = _query_point(px, py, margin_m, node_min_x, node_min_y, node_max_x, node_max_y,
                         node_child_start, node_child_end, n_parts, stack, cand)
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
            nh = _add_hit(hit_hot, hit_in, nh, part_hotspot[k], inside)
        if nh == 0:
            continue
        if m + nh > out_fix.shape[0]:
            out_fix = _grown(out_fix, m + nh)
            out_hot = _grown(out_hot, m + nh)
            out_in = _grown(out_in, m + nh)
        for q in range(nh):
            out_fix[m] = i
            out_hot[m] = hit_hot[q]
            out_in[m] = hit_in[q]
            m += 1
    return out_fix[:m].copy(), out_hot[:m].copy(), out_in[:m].copy()


@njit(inline="always", **JIT_OPTIONS)
def _clip(p, q, t0, t1):
    """One Liang-Barsky slab: keep the t with p * t <= q; empty when t0 > t1."""
    if p == 0.0:
        return (t0, t1) if q >= 0.0 else (1.0, 0.0)
    r = q / p
    if p < 0.0:
        return max(t0, r), t1
    return t0, min(t1, r)


@njit(inline="always", **JIT_OPTIONS)
def _edge_box_lb(xi, yi, xj, yj, x0, y0, x1, y1, slack):
    """0.0 when the edge meets the box grown by `slack`, else its distance to the box."""
    dx = xj - xi
    dy = yj - yi
    t0, t1 = _clip(-dx, xi - (x0 - slack), 0.0, 1.0)
    t0, t1 = _clip(dx, (x1 + slack) - xi, t0, t1)
    t0, t1 = _clip(-dy, yi - (y0 - slack), t0, t1)
    t0, t1 = _clip(dy, (y1 + slack) - yi, t0, t1)
    if t0 <= t1:
        return 0.0
    # Disjoint convex sets: the gap is between an endpoint and the box or a
    # box corner and the edge.
    ax = max(x0 - xi, 0.0, xi - x1)
    ay = max(y0 - yi, 0.0, yi - y1)
    bx = max(x0 - xj, 0.0, xj - x1)
    by = max(y0 - yj, 0.0, yj - y1)
    d = min(ax * ax + ay * ay, bx * bx + by * by,
            _edge_dist_sq(x0, y0, xi, yi, xj, yj), _edge_dist_sq(x1, y0, xi, yi, xj, yj),
            _edge_dist_sq(x0, y1, xi, yi, xj, yj), _edge_dist_sq(x1, y1, xi, yi, xj, yj))
    return math.sqrt(d)


@njit(**JIT_OPTIONS)
def _build_cells_kernel(
    vertex_x, vertex_y, ring_offsets, part_ring_offsets, box_min_x, box_min_y, box_max_x, box_max_y,
    origin_x, origin_y, cell_m, nx, ny, margin_m, slack,
):
    """Classify every (cell, part) pair within `margin_m` of the part; see build_cell_index.

    Returns per-entry arrays in part order: cell, part, key, parity, number of
    crossing-test edges, number of distance-test edges, and the edges
    (first vertex index) of all entries back to back.
    """
    n_parts = part_ring_offsets.shape[0] - 1
    inv = 1.0 / cell_m
    reach = margin_m + 2.0 * slack
    half_diag = 0.5 * math.sqrt(2.0) * (cell_m + 2.0 * slack)
    e_cell = np.empty(8 * n_parts + 64, dtype=np.int64)
    e_part = np.empty(e_cell.shape[0], dtype=np.int32)
    e_key = np.empty(e_cell.shape[0], dtype=np.float64)
    e_par = np.empty(e_cell.shape[0], dtype=np.uint8)
    e_npip = np.empty(e_cell.shape[0], dtype=np.int32)
    e_nnear = np.empty(e_cell.shape[0], dtype=np.int32)
    edges = np.empty(32 * n_parts + 64, dtype=np.int32)
    ne = 0
    nq = 0
    max_v = 1
    for k in range(n_parts):
        max_v = max(max_v, ring_offsets[part_ring_offsets[k + 1]] - ring_offsets[part_ring_offsets[k]])
    lb = np.empty(max_v, dtype=np.float64)
    vid = np.empty(max_v, dtype=np.int32)
    near_lb = np.empty(max_v, dtype=np.float64)
    for k in range(n_parts):
        r0 = part_ring_offsets[k]
        r1 = part_ring_offsets[k + 1]
        ix0 = min(max(int(math.floor((box_min_x[k] - reach - origin_x) * inv)), 0), nx - 1)
        ix1 = min(max(int(math.floor((box_max_x[k] + reach - origin_x) * inv)), 0), nx - 1)
        iy0 = min(max(int(math.floor((box_min_y[k] - reach - origin_y) * inv)), 0), ny - 1)
        iy1 = min(max(int(math.floor((box_max_y[k] + reach - origin_y) * inv)), 0), ny - 1)
        for iy in range(iy0, iy1 + 1):
            # The cell grown by `slack` holds every point the query maps to it.
            y0 = origin_y + iy * cell_m - slack
            y1 = origin_y + (iy + 1) * cell_m + slack
            for ix in range(ix0, ix1 + 1):
                x0 = origin_x + ix * cell_m - slack
                x1 = origin_x + (ix + 1) * cell_m + slack
                cx = 0.5 * (x0 + x1)
                cy = 0.5 * (y0 + y1)
                boundary = False
                min_lb = np.inf
                min_ub = np.inf
                nv = 0
                for r in range(r0, r1):
                    for v in range(ring_offsets[r], ring_offsets[r + 1] - 1):
                        xi, yi, xj, yj = vertex_x[v], vertex_y[v], vertex_x[v + 1], vertex_y[v + 1]
                        d = _edge_box_lb(xi, yi, xj, yj, x0, y0, x1, y1, slack)
                        boundary |= d == 0.0
                        min_lb = min(min_lb, d)
                        min_ub = min(min_ub, math.sqrt(_edge_dist_sq(cx, cy, xi, yi, xj, yj)) + half_diag)
                        lb[nv] = d
                        vid[nv] = v
                        nv += 1
                inside = False
                key = 0.0
                if not boundary:
                    # No edge within `slack` of the cell: all of it is on one side.
                    inside = _point_in_part(cx, cy, vertex_x, vertex_y, ring_offsets, r0, r1)
                    if not inside:
                        key = min_lb - 0.5 * slack
                        if key > margin_m:
                            continue
                if ne + 1 > e_cell.shape[0]:
                    e_cell = _grown(e_cell, ne + 1)
                    e_part = _grown(e_part, ne + 1)
                    e_key = _grown(e_key, ne + 1)
                    e_par = _grown(e_par, ne + 1)
                    e_npip = _grown(e_npip, ne + 1)
                    e_nnear = _grown(e_nnear, ne + 1)
                if nq + 2 * nv > edges.shape[0]:
                    edges = _grown(edges, nq + 2 * nv)
                parity = inside
                npip = 0
                if boundary:
                    for j in range(nv):
                        v = vid[j]
                        xi, yi, xj, yj = vertex_x[v], vertex_y[v], vertex_x[v + 1], vertex_y[v + 1]
                        if max(yi, yj) < y0 or min(yi, yj) > y1 or max(xi, xj) < x0:
                            continue  # cannot straddle the row, or wholly left
                        if min(xi, xj) > x1 and min(yi, yj) < y0 and max(yi, yj) > y1:
                            parity = not parity  # wholly right, spans the row
                            continue
                        edges[nq + npip] = v
                        npip += 1
                nnear = 0
                if not inside:
                    # Only an edge with lb <= min_ub can be nearest to a point
                    # of the cell; ascending lb so a hit comes early.
                    limit = min(min_ub, margin_m) + slack
                    base = nq + npip
                    for j in range(nv):
                        if lb[j] > limit:
                            continue
                        pos = nnear
                        while pos > 0 and near_lb[pos - 1] > lb[j]:
                            near_lb[pos] = near_lb[pos - 1]
                            edges[base + pos] = edges[base + pos - 1]
                            pos -= 1
                        near_lb[pos] = lb[j]
                        edges[base + pos] = vid[j]
                        nnear += 1
                e_cell[ne] = iy * nx + ix
                e_part[ne] = k
                e_key[ne] = key
                e_par[ne] = parity
                e_npip[ne] = npip
                e_nnear[ne] = nnear
                ne += 1
                nq += npip + nnear
    return e_cell[:ne], e_part[:ne], e_key[:ne], e_par[:ne], e_npip[:ne], e_nnear[:ne], edges[:nq]


def build_cell_index(vertex_x, vertex_y, ring_offsets, part_ring_offsets, part_boxes,
                     origin_x, origin_y, cell_m, nx, ny, margin_m, slack) -> dict:
    """Classified cell grid for :func:`locate_points` (called by geo.packing).

    Every (cell, part) pair whose cell, grown by `slack`, lies within
    `margin_m` of the part becomes an entry: *covered* (key 0, parity 1, no
    edges), *boundary* (key 0, row-band crossing edges + parity, distance
    edges) or *near* (key = lower bound of the distance, distance edges).
    Cell ``(ix, iy)`` (number ``iy * nx + ix``) covers
    ``[origin + i * cell_m, origin + (i + 1) * cell_m)`` on each axis.

    Returns
    -------
    dict
        ``cell_offsets`` (int32 or int64, nx * ny + 1): entries of cell ``c``
        are ``cell_offsets[c]:cell_offsets[c + 1]``, ascending key;
        ``entry_part`` (int32), ``entry_key`` (float64, metres),
        ``entry_parity`` (uint8); ``entry_edges`` (n_entries + 1) and
        ``entry_near`` (n_entries): entry ``e`` tests crossings on
        ``cell_edges[entry_edges[e]:entry_near[e]]`` and distance on
        ``cell_edges[entry_near[e]:entry_edges[e + 1]]``; ``cell_edges``
        (int32): first vertex of each edge.
    """
    if ring_offsets[-1] >= 2**31 - 1:
        raise ValueError("too many vertices for the int32 cell index")
    boxes = np.asarray(part_boxes, dtype=np.float64).reshape(-1, 4)
    cell, part, key, par, npip, nnear, edges = _build_cells_kernel(
        vertex_x, vertex_y, ring_offsets, part_ring_offsets,
        *(np.ascontiguousarray(boxes[:, j]) for j in range(4)),
        float(origin_x), float(origin_y), float(cell_m), int(nx), int(ny), float(margin_m), float(slack),
    )
    order = np.lexsort((key, cell))
    count = (npip + nnear).astype(np.int64)
    old_start = np.cumsum(count) - count
    count, npip = count[order], npip[order]
    idx_dtype = np.int32 if max(edges.shape[0], order.shape[0]) < 2**31 - 1 else np.int64
    entry_edges = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(count, out=entry_edges[1:])
    gather = np.repeat(old_start[order] - entry_edges[:-1], count) + np.arange(entry_edges[-1])
    offsets = np.zeros(int(nx) * int(ny) + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=int(nx) * int(ny)), out=offsets[1:])
    return dict(
        cell_offsets=offsets.astype(idx_dtype),
        entry_part=np.ascontiguousarray(part[order]),
        entry_key=np.ascontiguousarray(key[order]),
        entry_parity=np.ascontiguousarray(par[order]),
        entry_edges=entry_edges.astype(idx_dtype),
        entry_near=(entry_edges[:-1] + npip).astype(idx_dtype),
        cell_edges=np.ascontiguousarray(edges[gather]),
    )


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
        Use the classified cell grid when `margin_m` <= ``packed.grid_margin_m``;
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
    margin = check_margin(margin_m)
    p = packed
    if use_grid and margin <= p.grid_margin_m:
        return _locate_cells_kernel(
            x, y, margin, p.vertex_x, p.vertex_y, p.part_hotspot,
            float(p.cell_origin_x), float(p.cell_origin_y), 1.0 / p.cell_m, int(p.cell_nx), int(p.cell_ny),
            p.cell_offsets, p.entry_part, p.entry_key, p.entry_parity, p.entry_edges, p.entry_near,
            p.cell_edges,
        )
    tree = index_args(p, margin, False)[1:9]  # node boxes, children, n_parts, stack size
    return _locate_tree_kernel(
        x, y, margin, p.vertex_x, p.vertex_y, p.ring_offsets, p.part_ring_offsets, p.part_hotspot, *tree,
    )


def point_in_part(px: float, py: float, packed: PackedPolygons, part: int) -> bool:
    """Refine step alone: is (px, py) in part `part` (packed leaf order), ignoring its box?"""
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
