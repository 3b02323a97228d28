"""Input checks shared by the kernels' Python wrappers (ordering, visits).

Every wrapper validates its arrays here before a kernel sees them, so a bad
input is a ``ValueError`` that names the argument, never a crash in numba.
"""

from __future__ import annotations

import math
import operator

import numpy as np

# Input times must stay well inside int64: kernels add and subtract windows.
TS_LIMIT_MS = 2**62
# Dense codes (officers, hot spots) fit int32; the top value stays free.
MAX_CODE = np.iinfo(np.int32).max - 1


def seconds_to_ms(value: float, name: str) -> int:
    """A non-negative duration in seconds as whole milliseconds (inf allowed).

    Every kernel compares integer milliseconds, so thresholds are exact.
    """
    v = float(value)
    if math.isnan(v) or v < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if math.isinf(v) or v * 1000.0 >= TS_LIMIT_MS:
        return TS_LIMIT_MS
    return int(round(v * 1000.0))


def as_1d(a, dtype, name: str, n: int | None = None) -> np.ndarray:
    """``a`` as a contiguous 1-D array of ``dtype`` (of length ``n`` if given);
    an integer ``dtype`` refuses float input rather than truncating it."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]}, expected {n}")
    if np.issubdtype(dtype, np.integer) and arr.size and not (
        np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_
    ):
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def check_ts(ts: np.ndarray, name: str) -> None:
    """Epoch milliseconds within +-2**62."""
    if ts.size and (ts.min() <= -TS_LIMIT_MS or ts.max() >= TS_LIMIT_MS):
        raise ValueError(f"{name} must lie within +-2**62 ms (epoch milliseconds)")


def check_codes(codes: np.ndarray, name: str) -> np.ndarray:
    """Dense codes in [0, MAX_CODE], as int32."""
    if codes.size and (codes.min() < 0 or codes.max() > MAX_CODE):
        raise ValueError(
            f"{name} must be dense codes in [0, {MAX_CODE}], got [{codes.min()}, {codes.max()}]"
        )
    return np.ascontiguousarray(codes, dtype=np.int32)


def check_fixes(officer, ts_ms, x_m, y_m, row):
    """The fix columns of :func:`kernels.ordering.order_fixes`, checked:
    officer int32 codes, ts_ms int64, x_m and y_m float64, row int64."""
    officer = np.asarray(officer)
    n = officer.shape[0] if officer.ndim == 1 else -1
    officer = check_codes(as_1d(officer, np.int64, "officer"), "officer")
    ts = as_1d(ts_ms, np.int64, "ts_ms", n)
    check_ts(ts, "ts_ms")
    x = as_1d(x_m, np.float64, "x_m", n)
    y = as_1d(y_m, np.float64, "y_m", n)
    return officer, ts, x, y, as_1d(row, np.int64, "row", n)


def check_positive(value, name: str) -> float:
    """A float setting > 0 (inf allowed)."""
    v = float(value)
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def check_count(value, name: str, lo: int, hi: int) -> int:
    """An integer setting in [lo, hi] (bools and floats refused)."""
    try:
        v = operator.index(value)
    except TypeError:
        v = None
    if v is None or isinstance(value, (bool, np.bool_)) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return v
