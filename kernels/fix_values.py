"""Values that parsed but cannot be right, checked in one pass (both readers and the stream).

Rules, earliest wins: lat/lon not finite; |lat| > 90 or |lon| > 180; 0/0 (a
receiver with no fix); accuracy present (not NaN) but not a finite number
>= 0; ts outside [time_min_ms, time_max_ms).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels import reasons
from kernels._config import JIT_OPTIONS

_BAD_COORDINATES = reasons.BAD_COORDINATES
_OUT_OF_RANGE = reasons.COORDINATES_OUT_OF_RANGE
_NULL_ISLAND = reasons.NULL_ISLAND
_BAD_ACCURACY = reasons.BAD_ACCURACY
_TIME_OUT_OF_RANGE = reasons.TIME_OUT_OF_RANGE


@njit(
    "void(int64[::1], float64[::1], float64[::1], float64[::1], int64, int64, int8[::1])",
    **JIT_OPTIONS,
)
def _check(ts_ms, lat, lon, accuracy_m, time_min_ms, time_max_ms, status):
    for i in range(ts_ms.shape[0]):
        if status[i] != 0:
            continue
        la = lat[i]
        lo = lon[i]
        a = accuracy_m[i]
        if not (np.isfinite(la) and np.isfinite(lo)):
            status[i] = _BAD_COORDINATES
        elif abs(la) > 90.0 or abs(lo) > 180.0:
            status[i] = _OUT_OF_RANGE
        elif la == 0.0 and lo == 0.0:
            status[i] = _NULL_ISLAND
        elif not np.isnan(a) and not (a >= 0.0 and np.isfinite(a)):
            status[i] = _BAD_ACCURACY
        elif ts_ms[i] < time_min_ms or ts_ms[i] >= time_max_ms:
            status[i] = _TIME_OUT_OF_RANGE


def check_fix_values(ts_ms, lat, lon, accuracy_m, status, *, time_min_ms: int, time_max_ms: int) -> None:
    """Set ``status`` (int8, in place) to the reason code of each fix whose status is 0 and whose values
    cannot be right; rows already non-zero are left as they are."""
    _check(np.ascontiguousarray(ts_ms, np.int64), np.ascontiguousarray(lat, np.float64),
           np.ascontiguousarray(lon, np.float64), np.ascontiguousarray(accuracy_m, np.float64),
           int(time_min_ms), int(time_max_ms), status)
