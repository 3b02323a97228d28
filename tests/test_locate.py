"""kernels.locate and kernels.rtree_packed against the rtree + shapely reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo.synthetic import random_polygons_metric
from geo.packing import pack_polygons
from kernels.locate import locate_points, point_in_part, point_near_part
from kernels.rtree_packed import query_points
from tests.reference.locate import candidates_reference, locate_reference

REPO = Path(__file__).resolve().parents[1]
CENTER = (457_000.0, 340_000.0)


def random_geometries(seed: int, n: int, box_m: float = 1_500.0) -> np.ndarray:
    """Stars, stars with holes, MultiPolygons; dense enough to overlap."""
    rng = np.random.default_rng(seed)
    rings = random_polygons_metric(n, seed, box_m=box_m, center_m=CENTER, diameter_m=(60, 400))
    out = []
    for ring in rings:
        kind = rng.integers(0, 3)
        poly = shapely.Polygon(ring)
        c = poly.centroid
        if kind == 1:  # hole: the star shrunk around its centre stays inside it
            hole = shapely.affinity.scale(poly, 0.35, 0.35, origin=c)
            poly = shapely.Polygon(ring, [np.asarray(hole.exterior.coords)])
        elif kind == 2:  # two parts, far enough apart not to touch
            w = poly.bounds[2] - poly.bounds[0]
            other = shapely.affinity.translate(poly, xoff=1.5 * w + 10.0, yoff=rng.uniform(-50, 50))
            poly = shapely.MultiPolygon([poly, other])
        assert poly.is_valid
        out.append(poly)
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr


def probe_points(seed: int, geoms: np.ndarray, n_uniform: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points, boundary-jittered points, in-box points, and NaN."""
    rng = np.random.default_rng(seed + 1)
    lo = shapely.bounds(geoms).min(axis=0)[:2] - 100.0
    hi = shapely.bounds(geoms).max(axis=0)[2:] + 100.0
    xs = [rng.uniform(lo[0], hi[0], n_uniform)]
    ys = [rng.uniform(lo[1], hi[1], n_uniform)]
    # GPS jitter on the boundary is the normal case: points within a few
    # metres of vertices and edges.
    coords = shapely.get_coordinates(shapely.boundary(geoms))
    pick = rng.integers(0, coords.shape[0], 200)
    a, b = coords[pick], coords[np.minimum(pick + 1, coords.shape[0] - 1)]
    t = rng.uniform(0, 1, (200, 1))
    edge = a + t * (b - a) + rng.normal(0, 2.0, (200, 2))
    xs.append(edge[:, 0])
    ys.append(edge[:, 1])
    parts = shapely.get_parts(geoms)
    pb = shapely.bounds(parts)
    k = rng.integers(0, pb.shape[0], 200)
    xs.append(rng.uniform(pb[k, 0], pb[k, 2]))
    ys.append(rng.uniform(pb[k, 1], pb[k, 3]))
    xs.append(np.array([np.nan, CENTER[0], np.nan, np.inf]))
    ys.append(np.array([CENTER[1], np.nan, np.nan, CENTER[1]]))
    return np.concatenate(xs), np.concatenate(ys)


def assert_pairs_equal(got, want):
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40),
       margin=st.sampled_from([0.0, 0.0, 5.0, 25.0, 50.0, 80.0]))
def test_locate_matches_rtree_shapely_reference(seed, n, margin):
    geoms = random_geometries(seed, n)
    packed = pack_polygons(geoms)
    x, y = probe_points(seed, geoms)
    want = locate_reference(x, y, geoms, margin)
    assert_pairs_equal(locate_points(x, y, packed, margin), want)
    # The tree-only path gives the same answer as the bucket grid.
    assert_pairs_equal(locate_points(x, y, packed, margin, use_grid=False), want)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), top=st.sampled_from([10.0, 50.0, 90.0]))
def test_a_margin_per_point_gives_each_point_its_own_margins_pairs(seed, n, top):
    """Adaptive rules grow each fix's exit fence by its stated accuracy: one margin per point, on the grid
    (every margin within its build margin) and on the tree (some beyond), point for point the pairs the
    reference gives that point with that margin."""
    geoms = random_geometries(seed, n)
    packed = pack_polygons(geoms)
    x, y = probe_points(seed, geoms)
    margins = np.random.default_rng(seed).uniform(0.0, top, x.shape[0])
    margins[::7] = 0.0
    want_fix, want_hot, want_in = [], [], []
    for i in range(x.shape[0]):
        f, h, inside = locate_reference(x[i:i + 1], y[i:i + 1], geoms, float(margins[i]))
        want_fix += [i] * len(f)
        want_hot += list(h)
        want_in += list(inside)
    want = (np.array(want_fix, np.int64), np.array(want_hot, np.int64), np.array(want_in, bool))
    assert_pairs_equal(locate_points(x, y, packed, margins), want)
    assert_pairs_equal(locate_points(x, y, packed, margins, use_grid=False), want)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 60), margin=st.sampled_from([0.0, 30.0, 120.0]))
def test_coarse_step_matches_rtree_package(seed, n, margin):
    geoms = random_geometries(seed, n) if n else np.empty(0, dtype=object)
    packed = pack_polygons(geoms)
    if n:
        x, y = probe_points(seed, geoms, 200)
    else:
        x, y = np.array([CENTER[0], np.nan]), np.array([CENTER[1], 0.0])
    want = candidates_reference(x, y, packed.part_boxes(), margin)
    assert_pairs_equal(query_points(x, y, packed, margin), want)
    assert_pairs_equal(query_points(x, y, packed, margin, use_grid=False), want)


def test_margin_semantics_against_shapely_distance():
    square = shapely.box(0.0, 0.0, 100.0, 100.0)
    packed = pack_polygons([square])
    x = np.array([50.0, 109.9, 110.1, 107.0, -7.0, 50.0])
    y = np.array([50.0, 50.0, 50.0, 107.0, -7.0, 150.0])
    fix, hot, inside = locate_points(x, y, packed, margin_m=10.0)
    dist = shapely.distance(square, shapely.points(x, y))
    np.testing.assert_array_equal(fix, np.flatnonzero(dist <= 10.0))
    assert hot.tolist() == [0] * len(fix)
    assert inside.tolist() == [True, False, False, False]


def test_refine_rejects_points_in_box_but_outside_polygon():
    # An L shape: its box holds a notch that is not in the polygon; a donut:
    # its hole is in the box too.
    ell = shapely.Polygon([(0, 0), (100, 0), (100, 30), (30, 30), (30, 100), (0, 100)])
    donut = shapely.Polygon([(200, 0), (300, 0), (300, 100), (200, 100)],
                            [[(230, 30), (270, 30), (270, 70), (230, 70)]])
    packed = pack_polygons([ell, donut])
    x = np.array([70.0, 250.0, 10.0, 210.0])
    y = np.array([70.0, 50.0, 10.0, 10.0])
    cand_fix, _ = query_points(x, y, packed)
    assert cand_fix.tolist() == [0, 1, 2, 3]  # the coarse step passes all four
    fix, hot, inside = locate_points(x, y, packed)
    assert fix.tolist() == [2, 3] and hot.tolist() == [0, 1]
    # ... and the margin reaches the notch point only when it is close enough.
    fix, hot, inside = locate_points(x, y, packed, margin_m=45.0)
    assert (0 in fix.tolist()) and inside[fix == 0].tolist() == [False]
    leaf = int(np.flatnonzero(packed.part_hotspot == 0)[0])
    assert not point_in_part(70.0, 70.0, packed, leaf)
    assert point_in_part(10.0, 10.0, packed, leaf)
    assert point_near_part(70.0, 70.0, packed, leaf, 40.0)  # exactly 40 m away
    assert not point_near_part(70.0, 70.0, packed, leaf, 39.9)


def test_boundary_shared_edge_claimed_by_exactly_one():
    left = shapely.box(0.0, 0.0, 10.0, 10.0)
    right = shapely.box(10.0, 0.0, 20.0, 10.0)
    packed = pack_polygons([left, right])
    fix, hot, _ = locate_points(np.array([10.0, 10.0]), np.array([5.0, 2.5]), packed)
    assert fix.tolist() == [0, 1]
    # With a margin the point on the shared edge is within both.
    fix, hot, inside = locate_points(np.array([10.0]), np.array([5.0]), packed, margin_m=0.5)
    assert hot.tolist() == [0, 1] and inside.sum() == 1


def test_multipolygon_reported_once_and_overlaps_all_reported():
    a = shapely.MultiPolygon([shapely.box(0, 0, 10, 10), shapely.box(20, 0, 30, 10)])
    b = shapely.box(0, 0, 30, 10)
    packed = pack_polygons([a, b])
    fix, hot, inside = locate_points(np.array([5.0, 25.0, 15.0]), np.array([5.0, 5.0, 5.0]), packed, 1.0)
    assert list(zip(fix.tolist(), hot.tolist(), inside.tolist())) == [
        (0, 0, True), (0, 1, True), (1, 0, True), (1, 1, True), (2, 1, True)]


def test_nan_and_empty_inputs_give_no_pairs():
    packed = pack_polygons([shapely.box(0, 0, 10, 10)])
    fix, hot, inside = locate_points(np.array([np.nan, 5.0]), np.array([5.0, np.nan]), packed, 5.0)
    assert fix.size == hot.size == inside.size == 0
    fix, hot, inside = locate_points(np.zeros(0), np.zeros(0), packed)
    assert fix.dtype == np.int64 and hot.dtype == np.int64 and inside.dtype == np.bool_
    empty = pack_polygons(np.empty(0, dtype=object))
    assert locate_points(np.array([5.0]), np.array([5.0]), empty, 10.0)[0].size == 0


def test_large_margin_falls_back_to_tree_and_stays_exact():
    packed = pack_polygons([shapely.box(0, 0, 10, 10)], grid_margin_m=5.0)
    fix, _, inside = locate_points(np.array([30.0]), np.array([5.0]), packed, margin_m=20.0)
    assert fix.tolist() == [0] and inside.tolist() == [False]


@pytest.mark.parametrize("x, y, margin, message", [
    (np.zeros((2, 2)), np.zeros((2, 2)), 0.0, "1-D"),
    (np.zeros(3), np.zeros(2), 0.0, "differ in length"),
    (np.zeros(2), np.zeros(2), -1.0, "margin_m"),
    (np.zeros(2), np.zeros(2), float("nan"), "margin_m"),
    (["a"], ["b"], 0.0, "numeric"),
    (np.zeros(2), np.zeros(2), np.zeros(3), "one per point"),
    (np.zeros(2), np.zeros(2), np.array([1.0, np.nan]), "finite"),
    (np.zeros(2), np.zeros(2), np.array([1.0, -2.0]), "finite"),
])
def test_wrapper_rejects_bad_input(x, y, margin, message):
    packed = pack_polygons([shapely.box(0, 0, 10, 10)])
    with pytest.raises(ValueError, match=message):
        locate_points(x, y, packed, margin)


def test_packing_scales_and_tree_is_consistent():
    geoms = np.array([shapely.Polygon(r) for r in random_polygons_metric(
        20_000, 3, box_m=60_000, diameter_m=(50, 150))], dtype=object)
    packed = pack_polygons(geoms)
    assert packed.n_parts == 20_000 and packed.n_hotspots == 20_000
    # Every internal node's box covers its children's boxes.
    n = packed.n_parts
    for i, (s, e) in enumerate(zip(packed.node_child_start, packed.node_child_end)):
        if i % 97:  # a sample keeps this fast
            continue
        node = n + i
        assert packed.node_min_x[node] <= packed.node_min_x[s:e].min()
        assert packed.node_max_y[node] >= packed.node_max_y[s:e].max()
    # Hilbert order keeps neighbours close: leaf boxes in one node are compact.
    assert packed.level_bounds[-1] == packed.node_min_x.shape[0]


def test_kernels_also_pass_without_jit():
    """Run a small subset with NUMBA_DISABLE_JIT=1 so coverage sees the kernel bodies."""
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        pytest.skip("already running without JIT")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)),
           "-k", "refine or boundary or margin_semantics or nan_and_empty or multipolygon or falls_back or cell_borders"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "passed" in proc.stdout


# --- classified cell grid (kernels.cell_grid.classify_cells) -------------------

def _entry_cells(packed):
    """Per entry: its cell box (min_x, min_y, max_x, max_y) in metres."""
    n_cells = packed.cell_nx * packed.cell_ny
    cell = np.repeat(np.arange(n_cells), np.diff(packed.cell_offsets.astype(np.int64)))
    ix, iy = cell % packed.cell_nx, cell // packed.cell_nx
    x0 = packed.cell_origin_x + ix * packed.cell_w_m
    y0 = packed.cell_origin_y + iy * packed.cell_h_m
    return np.column_stack([x0, y0, x0 + packed.cell_w_m, y0 + packed.cell_h_m])


def _entry_kinds(packed):
    n_pip = (packed.entry_near - packed.entry_edges[:-1]).astype(np.int64)
    covered = (packed.entry_key == 0) & ((packed.entry_parity & 1) == 1) & (n_pip == 0)
    near = packed.entry_key > 0
    return covered, ~covered & ~near, near


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 25))
def test_cell_classification_is_sound(seed, n):
    geoms = random_geometries(seed, n)
    packed = pack_polygons(geoms)
    # parts in packed (leaf) order, rebuilt from the flat arrays
    rings = [np.column_stack([packed.vertex_x[a:b], packed.vertex_y[a:b]])
             for a, b in zip(packed.ring_offsets[:-1], packed.ring_offsets[1:])]
    parts = np.array([shapely.Polygon(rings[packed.part_ring_offsets[k]],
                                      rings[packed.part_ring_offsets[k] + 1:packed.part_ring_offsets[k + 1]])
                      for k in range(packed.n_parts)], dtype=object)
    covered, boundary, near = _entry_kinds(packed)
    assert boundary.any() and near.any() and (covered.any() or n < 5)
    part = parts[packed.entry_part]
    boxes = shapely.box(*_entry_cells(packed).T)
    # covered: the whole cell lies in the part's interior
    assert shapely.contains_properly(part[covered], boxes[covered]).all()
    # near: the cell lies outside, at least `key` metres from the part
    assert (shapely.distance(part[near], boxes[near]) >= packed.entry_key[near]).all()
    assert not shapely.intersects(part[near], boxes[near]).any()
    # boundary: a ring crosses the cell (grown by the slack)
    grown = shapely.buffer(boxes[boundary], 2e-3, cap_style="square", join_style="mitre")
    assert shapely.intersects(shapely.boundary(part[boundary]), grown).all()
    # parts missing from a cell are farther than the build margin from it
    hit = np.zeros((packed.cell_nx * packed.cell_ny, packed.n_parts), dtype=bool)
    cell = np.repeat(np.arange(hit.shape[0]), np.diff(packed.cell_offsets.astype(np.int64)))
    hit[cell, packed.entry_part] = True
    ci, pi = np.nonzero(~hit)
    sample = np.random.default_rng(seed).choice(ci.size, min(ci.size, 400), replace=False)
    ix, iy = ci[sample] % packed.cell_nx, ci[sample] // packed.cell_nx
    x0 = packed.cell_origin_x + ix * packed.cell_w_m
    y0 = packed.cell_origin_y + iy * packed.cell_h_m
    far = shapely.distance(parts[pi[sample]], shapely.box(x0, y0, x0 + packed.cell_w_m, y0 + packed.cell_h_m))
    assert (far > packed.grid_margin_m).all()
    # entries of a cell ascend by key; the per-cell byte never exceeds the first key
    for c in range(0, hit.shape[0], 7):
        a, b = packed.cell_offsets[c], packed.cell_offsets[c + 1]
        assert (np.diff(packed.entry_key[a:b]) >= 0).all()
        if b > a:
            assert packed.cell_qkey[c] * packed.cell_qkey_step <= packed.entry_key[a]
        else:
            assert packed.cell_qkey[c] == 255


def _points_in_cells(packed, mask, per_cell, seed):
    rng = np.random.default_rng(seed)
    boxes = np.repeat(_entry_cells(packed)[mask], per_cell, axis=0)
    return rng.uniform(boxes[:, 0], boxes[:, 2]), rng.uniform(boxes[:, 1], boxes[:, 3])


@pytest.mark.parametrize("margin", [0.0, 0.5, 10.0, 25.0, 50.0, 50.5])
def test_points_in_each_kind_of_cell_match_reference(margin):
    # A donut whose hole spans many cells, a MultiPolygon whose parts share
    # cells, and a large square overlapping a small star that touches cells
    # the square covers.
    donut = shapely.Polygon([(0, 0), (900, 0), (900, 900), (0, 900)],
                            [[(200, 200), (700, 200), (700, 650), (200, 650)]])
    multi = shapely.MultiPolygon([shapely.box(1000, 0, 1100, 400), shapely.box(1130, 0, 1230, 400)])
    square = shapely.box(1400, 0, 2000, 600)
    star = shapely.Polygon(random_polygons_metric(1, 5, box_m=1.0, center_m=(1650.0, 300.0),
                                                  diameter_m=(150, 150))[0])
    geoms = np.array([donut, multi, square, star], dtype=object)
    packed = pack_polygons(geoms)
    covered, boundary, near = _entry_kinds(packed)
    assert covered.sum() > 20 and boundary.sum() > 20 and near.sum() > 20
    # the square covers cells the star also has entries in (overlap)
    sq = int(np.flatnonzero(packed.part_hotspot == 2)[0])
    st_ = int(np.flatnonzero(packed.part_hotspot == 3)[0])
    cells = _entry_cells(packed)
    sq_cov = {tuple(b) for b in cells[covered & (packed.entry_part == sq)]}
    assert any(tuple(b) in sq_cov for b in cells[packed.entry_part == st_])
    xs, ys = [], []
    for j, mask in enumerate((covered, boundary, near)):
        x, y = _points_in_cells(packed, mask, 5, j)
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    want = locate_reference(x, y, geoms, margin)
    assert_pairs_equal(locate_points(x, y, packed, margin), want)
    assert_pairs_equal(locate_points(x, y, packed, margin, use_grid=False), want)
    # Every point in a covered cell of the square is in the square, any margin.
    x, y = _points_in_cells(packed, covered & (packed.entry_part == sq), 3, 9)
    fix, hot, inside = locate_points(x, y, packed, margin)
    assert set(fix[hot == 2].tolist()) == set(range(x.size)) and inside[hot == 2].all()


def test_cell_edges_on_cell_borders_and_zero_build_margin():
    # Vertices and edges exactly on cell borders; a grid built for margin 0
    # serves margin 0 and hands larger margins to the tree.
    packed = pack_polygons([shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)], grid_margin_m=0.0)
    xs = np.concatenate([np.linspace(-5, 205, 211), np.full(50, 100.0), np.linspace(0, 200, 9)])
    ys = np.concatenate([np.full(211, 50.0), np.linspace(-5, 105, 50), np.full(9, 100.0)])
    xs = np.concatenate([xs, packed.cell_origin_x + packed.cell_w_m * np.arange(1, 40)])
    ys = np.concatenate([ys, packed.cell_origin_y + packed.cell_h_m * np.arange(1, 40)])
    geoms = [shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)]
    for margin in (0.0, 3.0):
        got = locate_points(xs, ys, packed, margin)
        assert_pairs_equal(got, locate_points(xs, ys, packed, margin, use_grid=False))
    # Off the shared edge and the outer boundary the reference agrees too.
    off = (xs != 100.0) & (xs != 0.0) & (xs != 200.0) & (ys != 0.0) & (ys != 100.0)
    assert_pairs_equal(locate_points(xs[off], ys[off], packed), locate_reference(xs[off], ys[off], geoms))


def test_packed_size_is_reported_and_bounded():
    geoms = np.array([shapely.Polygon(r) for r in random_polygons_metric(
        2_000, 11, box_m=30_000, diameter_m=(150, 600))], dtype=object)
    packed = pack_polygons(geoms)
    polygons = packed.vertex_x.nbytes * 2
    assert polygons < packed.nbytes < 20 * polygons
    assert packed.cell_nx * packed.cell_ny <= max(16 * packed.n_parts, 2**18) * 1.05
