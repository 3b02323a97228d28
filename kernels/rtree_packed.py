"""Packed (flatbush-style) R-tree over polygon parts, traversed in numba.

The tree is built in :mod:`geo.packing` (numpy only); this module owns the
array layout and the traversal, so the kernels never see a Python object.

A uniform bucket grid sits in front of the tree for the coarse step alone
(:func:`query_points`); :func:`kernels.locate.locate_points` uses its own
classified cell grid (fields ``cell_*`` / ``entry_*``). For the usual small
margins a point looks up one cell and tests the few part boxes listed there
(about 2 box tests instead of about 40 for 1,000 hot spots with a 16-wide
tree); a margin larger than the grid was built for falls back to the tree.

Layout: node boxes in four float64 arrays; nodes ``0 .. n_parts - 1`` are the
leaves (leaf ``k`` is polygon part ``k``), internal nodes follow level by
level and the root is the last node. Internal node ``n_parts + i`` has
children ``node_child_start[i]:node_child_end[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS


@dataclass(frozen=True, eq=False)
class PackedPolygons:
    """Polygon parts as flat arrays plus a packed R-tree over their boxes.

    Attributes
    ----------
    vertex_x, vertex_y : numpy.ndarray of float64, shape (n_vertices,)
        Ring vertices in metres; every ring is stored closed (last == first).
    ring_offsets : numpy.ndarray of int64, shape (n_rings + 1,)
        Ring ``r`` is ``vertex_*[ring_offsets[r]:ring_offsets[r + 1]]``.
    part_ring_offsets : numpy.ndarray of int64, shape (n_parts + 1,)
        Part ``p`` owns rings ``part_ring_offsets[p]:part_ring_offsets[p + 1]``;
        the first is the exterior, the rest are holes.
    part_hotspot : numpy.ndarray of int64, shape (n_parts,)
        Hot spot (feature) index of each part; a MultiPolygon has several parts.
    node_min_x, node_min_y, node_max_x, node_max_y : numpy.ndarray of float64, shape (n_nodes,)
        Node boxes in metres, leaves (part boxes) first, root last.
    node_child_start, node_child_end : numpy.ndarray of int64, shape (n_nodes - n_parts,)
        Children of internal node ``n_parts + i``.
    level_bounds : numpy.ndarray of int64, shape (n_levels,)
        End (exclusive) of each level in the node arrays, leaves first.
    n_hotspots : int
        Number of hot spots (features).
    grid_margin_m : float
        The bucket grid lists every part whose box, grown by this many
        metres, touches a cell; queries with a larger margin use the tree.
    grid_origin_x, grid_origin_y, grid_cell_m : float
        South-west corner and cell side of the bucket grid, metres.
    grid_nx, grid_ny : int
        Grid columns and rows; cell ``(ix, iy)`` is number ``iy * nx + ix``.
    grid_cell_offsets : numpy.ndarray of int64, shape (nx * ny + 1,)
        Cell ``c`` lists parts ``grid_cell_items[offsets[c]:offsets[c + 1]]``.
    grid_cell_items : numpy.ndarray of int64, shape (n_items,)
        Part indices, ascending within each cell.
    cell_origin_x, cell_origin_y, cell_w_m, cell_h_m : float
        South-west corner, cell width and height (metres) of the classified cell grid
        that :func:`kernels.locate.locate_points` uses for margins up to
        `grid_margin_m` (entries from :func:`kernels.cell_grid.classify_cells`).
    cell_nx, cell_ny : int
        Its columns and rows; cell ``(ix, iy)`` is number ``iy * nx + ix``.
    cell_qkey, cell_qkey_step, cell_offsets, entry_part, entry_key, entry_parity, entry_edges, entry_near, cell_edges
        Its (cell, part) entries, layout in ``geo.packing._cell_index``.
    """

    vertex_x: np.ndarray
    vertex_y: np.ndarray
    ring_offsets: np.ndarray
    part_ring_offsets: np.ndarray
    part_hotspot: np.ndarray
    node_min_x: np.ndarray
    node_min_y: np.ndarray
    node_max_x: np.ndarray
    node_max_y: np.ndarray
    node_child_start: np.ndarray
    node_child_end: np.ndarray
    level_bounds: np.ndarray
    n_hotspots: int
    grid_margin_m: float
    grid_origin_x: float
    grid_origin_y: float
    grid_cell_m: float
    grid_nx: int
    grid_ny: int
    grid_cell_offsets: np.ndarray
    grid_cell_items: np.ndarray
    cell_origin_x: float
    cell_origin_y: float
    cell_w_m: float
    cell_h_m: float
    cell_nx: int
    cell_ny: int
    cell_qkey: np.ndarray
    cell_qkey_step: float
    cell_offsets: np.ndarray
    entry_part: np.ndarray
    entry_key: np.ndarray
    entry_parity: np.ndarray
    entry_edges: np.ndarray
    entry_near: np.ndarray
    cell_edges: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes held by all arrays (polygons, tree, bucket grid, cell grid)."""
        return int(sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray)))

    @property
    def n_parts(self) -> int:
        """Number of polygon parts (= leaves)."""
        return int(self.part_hotspot.shape[0])

    def part_boxes(self) -> np.ndarray:
        """Part boxes, float64 shape (n_parts, 4): min_x, min_y, max_x, max_y (m)."""
        n = self.n_parts
        return np.column_stack(
            [self.node_min_x[:n], self.node_min_y[:n], self.node_max_x[:n], self.node_max_y[:n]]
        )

    def stack_size(self) -> int:
        """Traversal stack bound: each level pushes at most its widest fan-out."""
        widest = int(np.max(self.node_child_end - self.node_child_start, initial=1))
        return widest * int(self.level_bounds.shape[0]) + 1


@njit(**JIT_OPTIONS)
def _query_point(
    px, py, margin_m,
    node_min_x, node_min_y, node_max_x, node_max_y,
    node_child_start, node_child_end, n_parts,
    stack, out_parts,
):
    """Leaves whose box grown by `margin_m` contains (px, py); returns their count.

    Candidates land in ``out_parts[:count]`` in traversal order (unsorted).
    `stack` (int64) must hold :meth:`PackedPolygons.stack_size` entries and
    `out_parts` (int64) ``n_parts``.
    """
    x0 = px - margin_m
    x1 = px + margin_m
    y0 = py - margin_m
    y1 = py + margin_m
    root = node_min_x.shape[0] - 1
    # Written as "not (... and ...)" so a NaN coordinate rejects the root.
    if not (node_min_x[root] <= x1 and node_max_x[root] >= x0
            and node_min_y[root] <= y1 and node_max_y[root] >= y0):
        return 0
    stack[0] = root
    sp = 1
    count = 0
    while sp > 0:
        sp -= 1
        node = stack[sp] - n_parts
        start = node_child_start[node]
        end = node_child_end[node]
        if start < n_parts:
            for k in range(start, end):
                # Branch-free box test: random points make each comparison
                # unpredictable, so one combined branch beats four.
                hit = ((node_min_x[k] <= x1) & (node_max_x[k] >= x0)
                       & (node_min_y[k] <= y1) & (node_max_y[k] >= y0))
                out_parts[count] = k
                count += hit
        else:
            for k in range(start, end):
                hit = ((node_min_x[k] <= x1) & (node_max_x[k] >= x0)
                       & (node_min_y[k] <= y1) & (node_max_y[k] >= y0))
                stack[sp] = k
                sp += hit
    return count


@njit(**JIT_OPTIONS)
def _grid_query_point(
    px, py, margin_m,
    node_min_x, node_min_y, node_max_x, node_max_y,
    grid_origin_x, grid_origin_y, grid_inv_cell, grid_nx, grid_ny,
    grid_cell_offsets, grid_cell_items, out_parts,
):
    """Same result as :func:`_query_point`, through the bucket grid.

    Valid only when `margin_m` <= the grid's build margin. Candidates come out
    ascending.
    """
    fx = (px - grid_origin_x) * grid_inv_cell
    fy = (py - grid_origin_y) * grid_inv_cell
    # Written as "not (... and ...)" so NaN falls out here too.
    if not (fx >= 0.0 and fy >= 0.0 and fx < grid_nx and fy < grid_ny):
        return 0
    cell = int(fy) * grid_nx + int(fx)
    x0 = px - margin_m
    x1 = px + margin_m
    y0 = py - margin_m
    y1 = py + margin_m
    count = 0
    for j in range(grid_cell_offsets[cell], grid_cell_offsets[cell + 1]):
        k = grid_cell_items[j]
        hit = ((node_min_x[k] <= x1) & (node_max_x[k] >= x0)
               & (node_min_y[k] <= y1) & (node_max_y[k] >= y0))
        out_parts[count] = k
        count += hit
    return count


@njit(**JIT_OPTIONS)
def _candidates(
    px, py, margin_m, use_grid,
    node_min_x, node_min_y, node_max_x, node_max_y,
    node_child_start, node_child_end, n_parts, stack,
    grid_origin_x, grid_origin_y, grid_inv_cell, grid_nx, grid_ny,
    grid_cell_offsets, grid_cell_items, out_parts,
):
    """Coarse step for one point: grid when allowed, else tree; returns the count."""
    if use_grid:
        return _grid_query_point(
            px, py, margin_m, node_min_x, node_min_y, node_max_x, node_max_y,
            grid_origin_x, grid_origin_y, grid_inv_cell, grid_nx, grid_ny,
            grid_cell_offsets, grid_cell_items, out_parts,
        )
    return _query_point(
        px, py, margin_m, node_min_x, node_min_y, node_max_x, node_max_y,
        node_child_start, node_child_end, n_parts, stack, out_parts,
    )


def index_args(packed: PackedPolygons, margin_m: float, use_grid: bool = True) -> tuple:
    """Arguments of :func:`_candidates` after ``px, py, margin_m`` (minus buffers).

    Returns ``(use_grid, node boxes x4, child start, child end, n_parts,
    stack_size, grid origin x, y, 1 / cell, nx, ny, cell offsets, cell items)``.
    """
    grid_ok = use_grid and margin_m <= packed.grid_margin_m and packed.grid_nx > 0
    return (
        grid_ok,
        packed.node_min_x, packed.node_min_y, packed.node_max_x, packed.node_max_y,
        packed.node_child_start, packed.node_child_end, packed.n_parts, packed.stack_size(),
        float(packed.grid_origin_x), float(packed.grid_origin_y),
        1.0 / packed.grid_cell_m if packed.grid_cell_m > 0 else 0.0,
        int(packed.grid_nx), int(packed.grid_ny),
        packed.grid_cell_offsets, packed.grid_cell_items,
    )


@njit(**JIT_OPTIONS)
def _query_points_kernel(
    x, y, margin_m, use_grid,
    node_min_x, node_min_y, node_max_x, node_max_y,
    node_child_start, node_child_end, n_parts, stack_size,
    grid_origin_x, grid_origin_y, grid_inv_cell, grid_nx, grid_ny,
    grid_cell_offsets, grid_cell_items,
):
    n = x.shape[0]
    stack = np.empty(stack_size, dtype=np.int64)
    cand = np.empty(max(n_parts, 1), dtype=np.int64)
    cap = n + 16
    out_fix = np.empty(cap, dtype=np.int64)
    out_part = np.empty(cap, dtype=np.int64)
    m = 0
    for i in range(n):
        c = _candidates(
            x[i], y[i], margin_m, use_grid, node_min_x, node_min_y, node_max_x, node_max_y,
            node_child_start, node_child_end, n_parts, stack,
            grid_origin_x, grid_origin_y, grid_inv_cell, grid_nx, grid_ny,
            grid_cell_offsets, grid_cell_items, cand,
        )
        if c == 0:
            continue
        if m + c > cap:
            cap = max(2 * cap, m + c)
            grown_fix = np.empty(cap, dtype=np.int64)
            grown_part = np.empty(cap, dtype=np.int64)
            grown_fix[:m] = out_fix[:m]
            grown_part[:m] = out_part[:m]
            out_fix = grown_fix
            out_part = grown_part
        sorted_cand = np.sort(cand[:c])
        for j in range(c):
            out_fix[m] = i
            out_part[m] = sorted_cand[j]
            m += 1
    return out_fix[:m].copy(), out_part[:m].copy()


def check_points(x_m, y_m) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert point coordinates for the kernels.

    Parameters
    ----------
    x_m, y_m : array_like of float, shape (n,)
        Metric coordinates; NaN allowed.

    Returns
    -------
    x, y : numpy.ndarray of float64, C-contiguous, shape (n,)

    Raises
    ------
    ValueError
        If the arrays are not 1-D, differ in length or are not numeric.
    """
    try:
        x = np.ascontiguousarray(x_m, dtype=np.float64)
        y = np.ascontiguousarray(y_m, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"point coordinates must be numeric arrays: {exc}") from None
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"point coordinates must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.shape[0]} vs {y.shape[0]}")
    return x, y


def check_margin(margin_m) -> float:
    """Return `margin_m` as float; ValueError unless finite and >= 0 (metres)."""
    try:
        m = float(margin_m)
    except (TypeError, ValueError):
        raise ValueError(f"margin_m must be a number of metres, got {margin_m!r}") from None
    if not (m >= 0.0 and np.isfinite(m)):
        raise ValueError(f"margin_m must be finite and >= 0 metres, got {margin_m!r}")
    return m


def query_points(x_m, y_m, packed: PackedPolygons, margin_m: float = 0.0, use_grid: bool = True):
    """Coarse step only: parts whose box, grown by `margin_m`, contains each point.

    Parameters
    ----------
    x_m, y_m : array_like of float64, shape (n,)
        Point coordinates in metres (the CRS of `packed`); NaN gives no pairs.
    packed : PackedPolygons
    margin_m : float, default 0.0
        Box growth in metres, >= 0.
    use_grid : bool, default True
        False forces the tree traversal (tests compare both paths).

    Returns
    -------
    fix_index, part_index : numpy.ndarray of int64, shape (n_pairs,)
        Candidate pairs sorted by (fix_index, part_index). Parts are in
        packed (leaf) order; map to hot spots with ``packed.part_hotspot``.
    """
    x, y = check_points(x_m, y_m)
    margin = check_margin(margin_m)
    return _query_points_kernel(x, y, margin, *index_args(packed, margin, use_grid))
