"""Exact point-polygon primitives shared by the locate and grid-build kernels.

Crossing-number (PNPOLY, half-open) containment over a part's rings, squared
distance to an edge for the margin test, and a small growable hit list.
"""

from __future__ import annotations


import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS


@njit(inline="always", **JIT_OPTIONS)
def crosses(px, py, xi, yi, xj, yj):
    """Does edge (i, j) cross the rightward ray from (px, py)? (PNPOLY, half-open).

    The side test is the sign of a cross product, not the textbook division,
    folded in without branches: random points make the branch a coin toss.
    """
    side = (xj - xi) * (py - yi) - (px - xi) * (yj - yi)
    return ((yi > py) != (yj > py)) & ((side > 0.0) == (yj > yi)) & (side != 0.0)


@njit(inline="always", **JIT_OPTIONS)
def edge_dist_sq(px, py, xi, yi, xj, yj):
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
def point_in_rings(px, py, vertex_x, vertex_y, ring_offsets, ring_start, ring_end):
    """Crossing-number test over every ring of one part (holes flip parity)."""
    inside = False
    for r in range(ring_start, ring_end):
        for i in range(ring_offsets[r], ring_offsets[r + 1] - 1):
            inside ^= crosses(px, py, vertex_x[i], vertex_y[i], vertex_x[i + 1], vertex_y[i + 1])
    return inside


@njit(inline="always", **JIT_OPTIONS)
def point_near_rings(px, py, margin_sq, vertex_x, vertex_y, ring_offsets, ring_start, ring_end):
    """True when some edge of the part lies within sqrt(margin_sq) of the point."""
    for r in range(ring_start, ring_end):
        for i in range(ring_offsets[r], ring_offsets[r + 1] - 1):
            if edge_dist_sq(px, py, vertex_x[i], vertex_y[i], vertex_x[i + 1], vertex_y[i + 1]) <= margin_sq:
                return True
    return False


@njit(inline="always", **JIT_OPTIONS)
def add_hit(hit_hot, hit_in, nh, h, inside):
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
def grown(a, need):
    """Copy of `a` with room for at least `need` items (capacity doubles)."""
    b = np.empty(max(2 * a.shape[0], need), dtype=a.dtype)
    b[:a.shape[0]] = a
    return b
