"""Build-time classification of grid cells against polygon parts.

For every (cell, part) pair within the build margin, a cell is *covered*
(wholly inside the part), *boundary* (an edge crosses it; only the edges
that can cross a rightward ray from inside the cell are kept, plus a parity
for edges wholly to the right) or *near* (outside, with a lower bound on its
distance). :mod:`kernels.locate` answers queries from these entries.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS
from kernels.polygon_tests import edge_dist_sq, grown, point_in_rings

__all__ = ["classify_cells"]


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
            edge_dist_sq(x0, y0, xi, yi, xj, yj), edge_dist_sq(x1, y0, xi, yi, xj, yj),
            edge_dist_sq(x0, y1, xi, yi, xj, yj), edge_dist_sq(x1, y1, xi, yi, xj, yj))
    return math.sqrt(d)


@njit(**JIT_OPTIONS)
def _build_cells_kernel(
    vertex_x, vertex_y, ring_offsets, part_ring_offsets, box_min_x, box_min_y, box_max_x, box_max_y,
    origin_x, origin_y, cell_w, cell_h, nx, ny, margin_m, slack,
):
    """Classify every (cell, part) pair within `margin_m` of the part; see classify_cells.

    Returns per-entry arrays in part order: cell, part, key, parity, number of
    crossing-test edges, number of distance-test edges, and the edges
    (first vertex index) of all entries back to back.
    """
    n_parts = part_ring_offsets.shape[0] - 1
    inv_w = 1.0 / cell_w
    inv_h = 1.0 / cell_h
    reach = margin_m + 2.0 * slack
    half_diag = 0.5 * math.hypot(cell_w + 2.0 * slack, cell_h + 2.0 * slack)
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
        ix0 = min(max(int(math.floor((box_min_x[k] - reach - origin_x) * inv_w)), 0), nx - 1)
        ix1 = min(max(int(math.floor((box_max_x[k] + reach - origin_x) * inv_w)), 0), nx - 1)
        iy0 = min(max(int(math.floor((box_min_y[k] - reach - origin_y) * inv_h)), 0), ny - 1)
        iy1 = min(max(int(math.floor((box_max_y[k] + reach - origin_y) * inv_h)), 0), ny - 1)
        for iy in range(iy0, iy1 + 1):
            # The cell grown by `slack` holds every point the query maps to it.
            y0 = origin_y + iy * cell_h - slack
            y1 = origin_y + (iy + 1) * cell_h + slack
            for ix in range(ix0, ix1 + 1):
                x0 = origin_x + ix * cell_w - slack
                x1 = origin_x + (ix + 1) * cell_w + slack
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
                        min_ub = min(min_ub, math.sqrt(edge_dist_sq(cx, cy, xi, yi, xj, yj)) + half_diag)
                        lb[nv] = d
                        vid[nv] = v
                        nv += 1
                inside = False
                key = 0.0
                if not boundary:
                    # No edge within `slack` of the cell: all of it is on one side.
                    inside = point_in_rings(cx, cy, vertex_x, vertex_y, ring_offsets, r0, r1)
                    if not inside:
                        key = min_lb - 0.5 * slack
                        if key > margin_m:
                            continue
                if ne + 1 > e_cell.shape[0]:
                    e_cell = grown(e_cell, ne + 1)
                    e_part = grown(e_part, ne + 1)
                    e_key = grown(e_key, ne + 1)
                    e_par = grown(e_par, ne + 1)
                    e_npip = grown(e_npip, ne + 1)
                    e_nnear = grown(e_nnear, ne + 1)
                if nq + 2 * nv > edges.shape[0]:
                    edges = grown(edges, nq + 2 * nv)
                parity = np.uint8(inside)
                npip = 0
                if boundary:
                    for j in range(nv):
                        v = vid[j]
                        xi, yi, xj, yj = vertex_x[v], vertex_y[v], vertex_x[v + 1], vertex_y[v + 1]
                        if max(yi, yj) < y0 or min(yi, yj) > y1 or max(xi, xj) < x0:
                            continue  # cannot straddle the row, or wholly left
                        if min(xi, xj) > x1 and min(yi, yj) < y0 and max(yi, yj) > y1:
                            parity ^= np.uint8(1)  # wholly right, spans the row
                            continue
                        edges[nq + npip] = v
                        npip += 1
                nnear = 0
                limit = min(min_ub, margin_m) + slack
                if not inside and 4 * np.sum(lb[:nv] <= limit) > nv:
                    parity |= 2  # many edges qualify: test the whole part instead
                elif not inside:
                    # Only an edge with lb <= min_ub can be nearest to a point
                    # of the cell; ascending lb so a hit comes early.
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


def classify_cells(vertex_x, vertex_y, ring_offsets, part_ring_offsets, part_boxes,
                   origin_x, origin_y, cell_w, cell_h, nx, ny, margin_m, slack) -> tuple:
    """Entries of the classified cell grid, in part order (geo.packing sorts them).

    Every (cell, part) pair whose cell, grown by `slack`, lies within
    `margin_m` of the part becomes an entry: *covered* (key 0, parity 1, no
    edges), *boundary* (key 0, crossing edges + parity, distance edges) or
    *near* (key = lower bound of the distance, distance edges). Parity bit 2
    means "distance test over the whole part". Cell ``(ix, iy)`` (number
    ``iy * nx + ix``) covers ``[origin_x + ix * cell_w, origin_x + (ix + 1) *
    cell_w)`` across, and likewise with `cell_h` up.

    Returns
    -------
    cell (int64), part (int32), key (float64, m), parity (uint8), n_crossing,
    n_distance (int32) per entry, and the edges of all entries back to back
    (int32: first vertex of the edge), crossing edges first.
    """
    if ring_offsets[-1] >= 2**31 - 1:
        raise ValueError("too many vertices for the int32 cell index")
    boxes = np.asarray(part_boxes, dtype=np.float64).reshape(-1, 4)
    return _build_cells_kernel(
        vertex_x, vertex_y, ring_offsets, part_ring_offsets,
        *(np.ascontiguousarray(boxes[:, j]) for j in range(4)),
        float(origin_x), float(origin_y), float(cell_w), float(cell_h), int(nx), int(ny),
        float(margin_m), float(slack),
    )
