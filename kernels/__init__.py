"""Numba kernels over flat arrays: locate fixes in hot spots, order fixes,
advance visit state, merge presence. Arrays in, arrays out; no I/O, no clocks."""
