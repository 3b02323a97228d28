"""Flatten metric polygons into flat arrays and pack an R-tree over them.

The layout follows mourner/flatbush: the leaves (one per polygon part) are
sorted along a Hilbert curve, then grouped `node_size` at a time, level by
level, up to a single root. Everything is a flat numpy array so the numba
kernels in :mod:`kernels.locate` can traverse it without Python objects.

Parts are stored in leaf order: leaf ``k`` *is* part ``k``, so the tree needs
no leaf -> item indirection.

Two grids sit beside the tree: a bucket grid of part boxes (coarse step,
:func:`kernels.rtree_packed.query_points`) and a finer classified cell grid
(covered / boundary / near cells, :func:`kernels.cell_grid.classify_cells`)
that :func:`kernels.locate.locate_points` uses for margins up to
`grid_margin_m`.
"""

from __future__ import annotations

import numpy as np
import shapely

from kernels.cell_grid import classify_cells
from kernels.rtree_packed import PackedPolygons

__all__ = ["NODE_SIZE", "PackedPolygons", "hilbert_index", "pack_polygons"]

NODE_SIZE = 16
# Queries with margins up to this use the cell grids; exit margins for GPS
# hysteresis are 10-50 m, larger ones still work through the tree.
GRID_MARGIN_M = 50.0
# Slack added to grid boxes so a point on a cell border cannot fall into the
# neighbouring cell by rounding and miss a part; exact box tests follow.
_GRID_SLACK_M = 1e-3
# Classified cell grid (kernels.locate): cells per median part box side, and
# the cap on the number of cells (per part, with a floor for small sets).
CELLS_PER_PART_SIDE = 6.0
MAX_CELLS_PER_PART = 16
MIN_MAX_CELLS = 1 << 18
# Cells are this many times wider than tall: a low row band crosses fewer
# edges, so the crossing test of a boundary cell has fewer to do.
CELL_ASPECT = 1.0


def hilbert_index(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hilbert curve index of integer cell coordinates (vectorised).

    Bit-parallel algorithm from mourner/flatbush (after rawrunprotected's
    hilbert curves), 16 bits per axis.

    Parameters
    ----------
    x, y : numpy.ndarray of integer, values in [0, 65535]

    Returns
    -------
    numpy.ndarray of uint32
        Position along the curve.
    """
    x = np.asarray(x, dtype=np.uint32)
    y = np.asarray(y, dtype=np.uint32)
    m = np.uint32(0xFFFF)
    a = x ^ y
    b = m ^ a
    c = m ^ (x | y)
    d = x & (y ^ m)

    A = a | (b >> 1)
    B = (a >> 1) ^ a
    C = ((c >> 1) ^ (b & (d >> 1))) ^ c
    D = ((a & (c >> 1)) ^ (d >> 1)) ^ d

    for s in (2, 4):
        a, b, c, d = A, B, C, D
        A = (a & (a >> s)) ^ (b & (b >> s))
        B = (a & (b >> s)) ^ (b & ((a ^ b) >> s))
        C = C ^ ((a & (c >> s)) ^ (b & (d >> s)))
        D = D ^ ((b & (c >> s)) ^ ((a ^ b) & (d >> s)))

    a, b, c, d = A, B, C, D
    C = C ^ ((a & (c >> 8)) ^ (b & (d >> 8)))
    D = D ^ ((b & (c >> 8)) ^ ((a ^ b) & (d >> 8)))

    a = C ^ (C >> 1)
    b = D ^ (D >> 1)
    i0 = x ^ y
    i1 = b | (m ^ (i0 | a))

    def spread(v: np.ndarray) -> np.ndarray:
        v = (v | (v << 8)) & np.uint32(0x00FF00FF)
        v = (v | (v << 4)) & np.uint32(0x0F0F0F0F)
        v = (v | (v << 2)) & np.uint32(0x33333333)
        return (v | (v << 1)) & np.uint32(0x55555555)

    return ((spread(i1) << 1) | spread(i0)).astype(np.uint32)


def pack_polygons(
    geometries_metric, node_size: int = NODE_SIZE, grid_margin_m: float = GRID_MARGIN_M
) -> PackedPolygons:
    """Flatten Polygon/MultiPolygon geometries and build the packed R-tree.

    Parameters
    ----------
    geometries_metric : sequence of shapely Polygon or MultiPolygon
        One per hot spot, in a metric CRS (metres), valid and non-empty.
    node_size : int, default 16
        Maximum children per internal node.
    grid_margin_m : float, default 50.0
        Largest query margin (metres) the cell grids serve; larger margins
        traverse the tree.

    Returns
    -------
    PackedPolygons

    Raises
    ------
    ValueError
        On an empty or non-polygonal geometry, or `node_size` < 2.
    """
    if node_size < 2:
        raise ValueError(f"node_size must be >= 2, got {node_size}")
    if not (np.isfinite(grid_margin_m) and grid_margin_m >= 0):
        raise ValueError(f"grid_margin_m must be finite and >= 0, got {grid_margin_m}")
    geoms = np.asarray(geometries_metric, dtype=object).reshape(-1)
    n_hot = geoms.shape[0]
    if n_hot:
        type_ids = shapely.get_type_id(geoms)
        # 3 = Polygon, 6 = MultiPolygon
        bad = ~np.isin(type_ids, (3, 6)) | shapely.is_empty(geoms)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"geometry {i} is not a non-empty Polygon/MultiPolygon: {geoms[i]}")

    parts, part_hot = shapely.get_parts(geoms, return_index=True)
    part_hot = part_hot.astype(np.int64)
    n_parts = parts.shape[0]

    # Hilbert order of part box centres on a 65536^2 grid over the extent.
    bounds = shapely.bounds(parts).reshape(-1, 4)
    if n_parts:
        lo = bounds[:, :2].min(axis=0)
        hi = bounds[:, 2:].max(axis=0)
        span = np.maximum(hi - lo, 1e-9)
        cx = (bounds[:, 0] + bounds[:, 2]) * 0.5
        cy = (bounds[:, 1] + bounds[:, 3]) * 0.5
        hx = np.floor((cx - lo[0]) / span[0] * 65535.0)
        hy = np.floor((cy - lo[1]) / span[1] * 65535.0)
        h = hilbert_index(hx, hy)
        # Ties (same cell) resolved by the original order: deterministic.
        order = np.lexsort((np.arange(n_parts), h))
    else:
        order = np.zeros(0, dtype=np.int64)
    parts = parts[order]
    part_hot = part_hot[order]
    bounds = bounds[order]

    # Rings: get_rings gives each polygon's exterior, then its holes.
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    n_rings_per_part = np.bincount(ring_part, minlength=n_parts)
    part_ring_offsets = np.zeros(n_parts + 1, dtype=np.int64)
    np.cumsum(n_rings_per_part, out=part_ring_offsets[1:])
    coords, vert_ring = shapely.get_coordinates(rings, return_index=True)
    n_vert_per_ring = np.bincount(vert_ring, minlength=rings.shape[0])
    ring_offsets = np.zeros(rings.shape[0] + 1, dtype=np.int64)
    np.cumsum(n_vert_per_ring, out=ring_offsets[1:])

    tree = _pack_tree(bounds, node_size)
    grid = _build_grid(bounds, float(grid_margin_m))
    vertex_x = np.ascontiguousarray(coords[:, 0], dtype=np.float64)
    vertex_y = np.ascontiguousarray(coords[:, 1], dtype=np.float64)
    cells = _cell_grid(bounds, float(grid_margin_m))
    cells.update(_cell_index(
        classify_cells(
            vertex_x, vertex_y, ring_offsets, part_ring_offsets, bounds, cells["cell_origin_x"],
            cells["cell_origin_y"], cells["cell_w_m"], cells["cell_h_m"], cells["cell_nx"], cells["cell_ny"],
            float(grid_margin_m), cells.pop("slack"),
        ),
        cells["cell_nx"] * cells["cell_ny"], float(grid_margin_m),
    ))
    return PackedPolygons(
        vertex_x=vertex_x,
        vertex_y=vertex_y,
        ring_offsets=ring_offsets,
        part_ring_offsets=part_ring_offsets,
        part_hotspot=np.ascontiguousarray(part_hot),
        n_hotspots=int(n_hot),
        **tree,
        **grid,
        **cells,
    )


def _pack_tree(leaf_bounds: np.ndarray, node_size: int) -> dict[str, np.ndarray]:
    """Group consecutive nodes `node_size` at a time until one root remains.

    Always produces at least one internal level, so the root has children
    even when there are fewer than `node_size` (or zero) leaves.
    """
    n = leaf_bounds.shape[0]
    mins_x = [leaf_bounds[:, 0]]
    mins_y = [leaf_bounds[:, 1]]
    maxs_x = [leaf_bounds[:, 2]]
    maxs_y = [leaf_bounds[:, 3]]
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    level_bounds = [n]
    level_start, level_n = 0, n
    while True:
        k = max(1, -(-level_n // node_size))
        first = np.arange(k, dtype=np.int64) * node_size
        last = np.minimum(first + node_size, level_n)
        if level_n == 0:
            # Empty tree: one root with no children and an empty box that no
            # point intersects.
            mins_x.append(np.array([np.inf]))
            mins_y.append(np.array([np.inf]))
            maxs_x.append(np.array([-np.inf]))
            maxs_y.append(np.array([-np.inf]))
            last = first
        else:
            mins_x.append(np.minimum.reduceat(mins_x[-1], first))
            mins_y.append(np.minimum.reduceat(mins_y[-1], first))
            maxs_x.append(np.maximum.reduceat(maxs_x[-1], first))
            maxs_y.append(np.maximum.reduceat(maxs_y[-1], first))
        starts.append(level_start + first)
        ends.append(level_start + last)
        level_start += level_n
        level_n = k
        level_bounds.append(level_start + k)
        if k == 1:
            break

    def cat(chunks: list[np.ndarray], dtype) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(chunks), dtype=dtype)

    return dict(
        node_min_x=cat(mins_x, np.float64),
        node_min_y=cat(mins_y, np.float64),
        node_max_x=cat(maxs_x, np.float64),
        node_max_y=cat(maxs_y, np.float64),
        node_child_start=cat(starts, np.int64),
        node_child_end=cat(ends, np.int64),
        level_bounds=np.asarray(level_bounds, dtype=np.int64),
    )


def _build_grid(leaf_bounds: np.ndarray, margin_m: float) -> dict:
    """Uniform bucket grid listing every part whose grown box touches a cell.

    The cell side is the median grown box side, enlarged when needed so the
    grid has at most ``max(4 * n_parts, 4096)`` cells (memory stays linear).
    """
    n = leaf_bounds.shape[0]
    if n == 0:
        return dict(
            grid_margin_m=margin_m, grid_origin_x=0.0, grid_origin_y=0.0, grid_cell_m=1.0,
            grid_nx=0, grid_ny=0, grid_cell_offsets=np.zeros(1, dtype=np.int64),
            grid_cell_items=np.zeros(0, dtype=np.int64),
        )
    grow = margin_m + _GRID_SLACK_M
    lo_x = leaf_bounds[:, 0] - grow
    lo_y = leaf_bounds[:, 1] - grow
    hi_x = leaf_bounds[:, 2] + grow
    hi_y = leaf_bounds[:, 3] + grow
    x0, y0 = float(lo_x.min()), float(lo_y.min())
    width = max(float(hi_x.max()) - x0, 1e-6)
    height = max(float(hi_y.max()) - y0, 1e-6)
    cell = float(np.median(np.maximum(hi_x - lo_x, hi_y - lo_y)))
    max_cells = max(4 * n, 4096)
    if (width / cell + 1) * (height / cell + 1) > max_cells:
        cell = float(np.sqrt(width * height / max_cells)) * 1.01
    # The kernel multiplies by the inverse; do the same here so both sides
    # round alike.
    inv = 1.0 / cell
    nx = int(width * inv) + 1
    ny = int(height * inv) + 1
    ix0 = np.clip(np.floor((lo_x - x0) * inv).astype(np.int64), 0, nx - 1)
    ix1 = np.clip(np.floor((hi_x - x0) * inv).astype(np.int64), 0, nx - 1)
    iy0 = np.clip(np.floor((lo_y - y0) * inv).astype(np.int64), 0, ny - 1)
    iy1 = np.clip(np.floor((hi_y - y0) * inv).astype(np.int64), 0, ny - 1)
    w = ix1 - ix0 + 1
    counts = w * (iy1 - iy0 + 1)
    part = np.repeat(np.arange(n, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    local = np.arange(part.shape[0], dtype=np.int64) - np.repeat(first, counts)
    cells = (iy0[part] + local // w[part]) * nx + ix0[part] + local % w[part]
    order = np.lexsort((part, cells))
    offsets = np.zeros(nx * ny + 1, dtype=np.int64)
    np.cumsum(np.bincount(cells, minlength=nx * ny), out=offsets[1:])
    return dict(
        grid_margin_m=margin_m, grid_origin_x=x0, grid_origin_y=y0, grid_cell_m=cell,
        grid_nx=nx, grid_ny=ny, grid_cell_offsets=offsets,
        grid_cell_items=np.ascontiguousarray(part[order]),
    )


def _cell_grid(leaf_bounds: np.ndarray, margin_m: float) -> dict:
    """Origin, cell side and shape of the classified cell grid.

    The side is a sixth of the median part box side, enlarged when needed
    so the grid has at most ``max(16 * n_parts, 2 ** 18)`` cells. The grid
    covers every part box grown by the margin; the slack (1 mm, more for
    huge coordinates) dwarfs rounding in the cell lookup.
    """
    n = leaf_bounds.shape[0]
    if n == 0:
        return dict(cell_origin_x=0.0, cell_origin_y=0.0, cell_w_m=1.0, cell_h_m=1.0, cell_nx=0, cell_ny=0,
                    slack=_GRID_SLACK_M)
    slack = max(_GRID_SLACK_M, 1e-9 * float(np.abs(leaf_bounds).max()))
    grow = margin_m + 4.0 * slack
    x0 = float(leaf_bounds[:, 0].min()) - grow
    y0 = float(leaf_bounds[:, 1].min()) - grow
    width = float(leaf_bounds[:, 2].max()) + grow - x0
    height = float(leaf_bounds[:, 3].max()) + grow - y0
    side = np.maximum(leaf_bounds[:, 2] - leaf_bounds[:, 0], leaf_bounds[:, 3] - leaf_bounds[:, 1])
    cell = max(float(np.median(side)) / CELLS_PER_PART_SIDE, 1e-3)
    max_cells = max(MAX_CELLS_PER_PART * n, MIN_MAX_CELLS)
    if (width / cell + 1) * (height / cell * CELL_ASPECT + 1) > max_cells:
        cell = float(np.sqrt(width * height * CELL_ASPECT / max_cells)) * 1.01
    cell_h = cell / CELL_ASPECT
    nx = int(width / cell) + 1
    ny = int(height / cell_h) + 1
    return dict(cell_origin_x=x0, cell_origin_y=y0, cell_w_m=cell, cell_h_m=cell_h, cell_nx=nx, cell_ny=ny,
                slack=slack)


def _cell_index(classified: tuple, n_cells: int, margin_m: float) -> dict:
    """Sort the entries of :func:`kernels.cell_grid.classify_cells` into the grid.

    Returns the ``cell_*`` / ``entry_*`` fields of :class:`PackedPolygons`:
    entries of cell ``c`` are ``cell_offsets[c]:cell_offsets[c + 1]``,
    ascending key; entry ``e`` tests crossings on
    ``cell_edges[entry_edges[e]:entry_near[e]]`` and distance on
    ``cell_edges[entry_near[e]:entry_edges[e + 1]]``; ``cell_qkey`` holds the
    smallest key of each cell in steps of ``cell_qkey_step`` (1/250 of the
    margin), rounded down a step more against rounding, 255 when empty.
    """
    cell, part, key, par, npip, nnear, edges = classified
    order = np.lexsort((key, cell))
    count = (npip + nnear).astype(np.int64)
    old_start = np.cumsum(count) - count
    count, npip = count[order], npip[order]
    idx_dtype = np.int32 if max(edges.shape[0], order.shape[0]) < 2**31 - 1 else np.int64
    entry_edges = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(count, out=entry_edges[1:])
    gather = np.repeat(old_start[order] - entry_edges[:-1], count) + np.arange(entry_edges[-1])
    offsets = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=n_cells), out=offsets[1:])
    step = max(float(margin_m), 1e-6) / 250.0
    qkey = np.full(n_cells, 255, dtype=np.uint8)
    has = offsets[1:] > offsets[:-1]
    first = key[order][offsets[:-1][has]]
    qkey[has] = np.clip(np.floor(first / step) - 1.0, 0.0, 250.0).astype(np.uint8)
    return dict(
        cell_qkey=qkey,
        cell_qkey_step=step,
        cell_offsets=offsets.astype(idx_dtype),
        entry_part=np.ascontiguousarray(part[order]),
        entry_key=np.ascontiguousarray(key[order]),
        entry_parity=np.ascontiguousarray(par[order]),
        entry_edges=entry_edges.astype(idx_dtype),
        entry_near=(entry_edges[:-1] + npip).astype(idx_dtype),
        cell_edges=np.ascontiguousarray(edges[gather]),
    )
