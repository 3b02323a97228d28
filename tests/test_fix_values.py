"""check_fix_values against the rules written out in Python, over every combination of awkward values."""

import itertools
import math

import numpy as np

from kernels import reasons
from kernels.fix_values import check_fix_values

LATS = [0.0, 52.9, -90.0, 90.0, 90.0001, -91.0, math.nan, math.inf, -math.inf]
LONS = [0.0, -1.15, 180.0, -180.0, 180.5, math.nan, math.inf]
ACCURACIES = [math.nan, 0.0, 12.5, -1.0, math.inf, -math.inf]
TIMES = [999, 1000, 1999, 2000]  # bounds [1000, 2000)


def expected(ts, lat, lon, acc):
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return reasons.BAD_COORDINATES
    if abs(lat) > 90 or abs(lon) > 180:
        return reasons.COORDINATES_OUT_OF_RANGE
    if lat == 0 and lon == 0:
        return reasons.NULL_ISLAND
    if not math.isnan(acc) and not (acc >= 0 and math.isfinite(acc)):
        return reasons.BAD_ACCURACY
    if not 1000 <= ts < 2000:
        return reasons.TIME_OUT_OF_RANGE
    return 0


def test_every_combination_gets_the_first_rule_it_breaks():
    rows = list(itertools.product(TIMES, LATS, LONS, ACCURACIES))
    ts, lat, lon, acc = (np.array(c) for c in zip(*rows))
    status = np.zeros(len(rows), np.int8)
    status[::7] = reasons.MALFORMED  # rows already rejected keep their reason
    check_fix_values(ts.astype(np.int64), lat, lon, acc, status, time_min_ms=1000, time_max_ms=2000)
    want = [reasons.MALFORMED if i % 7 == 0 else expected(*r) for i, r in enumerate(rows)]
    assert status.tolist() == want
    assert set(want) >= {0, reasons.BAD_COORDINATES, reasons.COORDINATES_OUT_OF_RANGE, reasons.NULL_ISLAND,
                         reasons.BAD_ACCURACY, reasons.TIME_OUT_OF_RANGE}
