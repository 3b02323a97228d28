"""Byte-level parsers for numbers, RFC 3339 times and officer-id hashes.

These run inside the CSV scanner and on arrays of time strings, so that a
10-million-row export is parsed without one Python object per row.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS

# Powers of ten that are exact in float64: dividing an exact integer mantissa
# by one of them is correctly rounded (Clinger's fast path).
_EXACT_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)
_MAX_EXACT_MANTISSA = 2**53

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

# Epoch milliseconds are accepted when the field is an integer of at most
# this many digits (year 2286 needs 13).
_MAX_EPOCH_DIGITS = 15


@njit(**JIT_OPTIONS)
def _is_space(c):
    return c == 32 or c == 9 or c == 13


@njit(**JIT_OPTIONS)
def parse_float(buf, start, end):
    """Parse a decimal float from ``buf[start:end]``.

    Returns ``(value, ok)``. Accepts an optional sign, digits, a point, an
    exponent, and the literals ``nan``/``inf`` (so NaN can be reported as a
    bad coordinate rather than as a parse error). Surrounding spaces are
    ignored.
    """
    while start < end and _is_space(buf[start]):
        start += 1
    while end > start and _is_space(buf[end - 1]):
        end -= 1
    if start >= end:
        return np.nan, False
    neg = False
    c = buf[start]
    if c == 45 or c == 43:  # - +
        neg = c == 45
        start += 1
        if start >= end:
            return np.nan, False
    # nan / inf literals, any case.
    n = end - start
    if n == 3 and (buf[start] | 32) == 110 and (buf[start + 1] | 32) == 97 and (buf[start + 2] | 32) == 110:
        return np.nan, True
    if (n == 3 or n == 8) and (buf[start] | 32) == 105 and (buf[start + 1] | 32) == 110 and (buf[start + 2] | 32) == 102:
        return (-np.inf if neg else np.inf), True
    mant = np.int64(0)
    digits = 0
    dropped = 0  # integer digits beyond int64 precision
    frac_digits = 0
    seen_point = False
    any_digit = False
    i = start
    while i < end:
        c = buf[i]
        if 48 <= c <= 57:
            any_digit = True
            if digits < 18:
                mant = mant * 10 + (c - 48)
                if mant != 0:
                    digits += 1
                if seen_point:
                    frac_digits += 1
            elif not seen_point:
                dropped += 1
        elif c == 46 and not seen_point:  # .
            seen_point = True
        else:
            break
        i += 1
    if not any_digit:
        return np.nan, False
    exp10 = dropped - frac_digits
    if i < end:
        c = buf[i]
        if c != 101 and c != 69:  # e E
            return np.nan, False
        i += 1
        eneg = False
        if i < end and (buf[i] == 45 or buf[i] == 43):
            eneg = buf[i] == 45
            i += 1
        if i >= end:
            return np.nan, False
        e = 0
        while i < end:
            c = buf[i]
            if c < 48 or c > 57:
                return np.nan, False
            if e < 10000:
                e = e * 10 + (c - 48)
            i += 1
        exp10 += -e if eneg else e
    value = np.float64(mant)
    if mant < _MAX_EXACT_MANTISSA and -22 <= exp10 <= 22:
        if exp10 < 0:
            value = value / _EXACT_POW10[-exp10]
        else:
            value = value * _EXACT_POW10[exp10]
    elif exp10 != 0:
        value = value * 10.0**exp10
    return (-value if neg else value), True


@njit(**JIT_OPTIONS)
def _days_from_civil(y, m, d):
    # Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic
    # Gregorian calendar.
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(**JIT_OPTIONS)
def _days_in_month(y, m):
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


@njit(**JIT_OPTIONS)
def _digits(buf, i, n):
    v = 0
    for k in range(i, i + n):
        c = buf[k]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(**JIT_OPTIONS)
def parse_time_ms(buf, start, end):
    """Parse an RFC 3339 time with offset, or integer epoch milliseconds.

    Returns ``(epoch_ms, ok)``. ``YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)``
    (``T`` may be a space; the offset is required, because a time without one
    is ambiguous across the clock change). Fractions beyond milliseconds are
    truncated.
    """
    while start < end and _is_space(buf[start]):
        start += 1
    while end > start and _is_space(buf[end - 1]):
        end -= 1
    n = end - start
    if n <= 0:
        return np.int64(0), False
    # Epoch milliseconds: an optionally signed integer.
    i = start
    neg = False
    if buf[i] == 45 and n > 1 and 48 <= buf[i + 1] <= 57:
        neg = True
        i += 1
    if n - (i - start) <= _MAX_EPOCH_DIGITS:
        v = np.int64(0)
        all_digits = True
        for k in range(i, end):
            c = buf[k]
            if c < 48 or c > 57:
                all_digits = False
                break
            v = v * 10 + (c - 48)
        if all_digits:
            return (-v if neg else v), True
    if n < 20:
        return np.int64(0), False
    s = start
    year = _digits(buf, s, 4)
    month = _digits(buf, s + 5, 2)
    day = _digits(buf, s + 8, 2)
    hour = _digits(buf, s + 11, 2)
    minute = _digits(buf, s + 14, 2)
    second = _digits(buf, s + 17, 2)
    if year < 0 or month < 1 or month > 12 or day < 1 or hour < 0 or hour > 23:
        return np.int64(0), False
    if minute < 0 or minute > 59 or second < 0 or second > 59:
        return np.int64(0), False
    if buf[s + 4] != 45 or buf[s + 7] != 45 or buf[s + 13] != 58 or buf[s + 16] != 58:
        return np.int64(0), False
    sep = buf[s + 10]
    if sep != 84 and sep != 116 and sep != 32:  # T t space
        return np.int64(0), False
    if day > _days_in_month(year, month):
        return np.int64(0), False
    i = s + 19
    millis = 0
    if i < end and buf[i] == 46:  # fraction
        i += 1
        nd = 0
        while i < end and 48 <= buf[i] <= 57:
            if nd < 3:
                millis = millis * 10 + (buf[i] - 48)
            nd += 1
            i += 1
        if nd == 0:
            return np.int64(0), False
        while nd < 3:
            millis *= 10
            nd += 1
    if i >= end:
        return np.int64(0), False
    c = buf[i]
    offset_min = 0
    if c == 90 or c == 122:  # Z z
        if i + 1 != end:
            return np.int64(0), False
    elif c == 43 or c == 45:
        if end - i != 6 or buf[i + 3] != 58:
            return np.int64(0), False
        oh = _digits(buf, i + 1, 2)
        om = _digits(buf, i + 4, 2)
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return np.int64(0), False
        offset_min = oh * 60 + om
        if c == 45:
            offset_min = -offset_min
    else:
        return np.int64(0), False
    days = _days_from_civil(year, month, day)
    secs = np.int64(days) * 86400 + hour * 3600 + minute * 60 + second - offset_min * 60
    return secs * 1000 + millis, True


@njit(**JIT_OPTIONS)
def fnv1a64(buf, start, end):
    """64-bit FNV-1a hash of ``buf[start:end]`` (officer ids to int keys)."""
    h = _FNV_OFFSET
    for i in range(start, end):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


@njit(**JIT_OPTIONS)
def _parse_times_kernel(buf, offsets, out_ms, out_ok):
    for i in range(offsets.shape[0] - 1):
        v, ok = parse_time_ms(buf, offsets[i], offsets[i + 1])
        out_ms[i] = v
        out_ok[i] = ok


def parse_times(buf: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse many time strings packed in one buffer.

    Parameters
    ----------
    buf : ndarray of uint8, shape (n_bytes,)
        The strings, concatenated.
    offsets : ndarray of int64, shape (n + 1,)
        String ``i`` is ``buf[offsets[i]:offsets[i + 1]]``.

    Returns
    -------
    epoch_ms : ndarray of int64, shape (n,)
        Milliseconds since 1970-01-01T00:00:00Z (0 where not parsed).
    ok : ndarray of bool, shape (n,)
        False where the string is neither RFC 3339 with offset nor epoch ms.
    """
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] < 1:
        raise ValueError("offsets must be a 1-d array of n + 1 positions")
    if offsets[-1] > buf.shape[0]:
        raise ValueError(f"offsets run past the buffer ({offsets[-1]} > {buf.shape[0]})")
    n = offsets.shape[0] - 1
    out_ms = np.empty(n, dtype=np.int64)
    out_ok = np.empty(n, dtype=np.bool_)
    _parse_times_kernel(buf, offsets, out_ms, out_ok)
    return out_ms, out_ok


@njit(**JIT_OPTIONS)
def _hash_spans_kernel(buf, offsets, out):
    for i in range(offsets.shape[0] - 1):
        out[i] = fnv1a64(buf, offsets[i], offsets[i + 1])


def hash_spans(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """FNV-1a 64 of each packed string (officer ids from JSON records).

    Parameters
    ----------
    buf : ndarray of uint8, shape (n_bytes,)
    offsets : ndarray of int64, shape (n + 1,)

    Returns
    -------
    ndarray of uint64, shape (n,)
        The same hash the CSV scanner computes for the same id bytes.
    """
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[-1] > buf.shape[0]:
        raise ValueError("offsets must be n + 1 positions inside buf")
    out = np.empty(offsets.shape[0] - 1, np.uint64)
    _hash_spans_kernel(buf, offsets, out)
    return out


@njit(**JIT_OPTIONS)
def _hash_ranges_kernel(buf, start, end, out):
    for i in range(start.shape[0]):
        out[i] = fnv1a64(buf, start[i], end[i])


def hash_ranges(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """FNV-1a 64 of ``buf[start[i]:end[i]]`` for each i (ids where they lie in a chunk of records)."""
    start = np.ascontiguousarray(start, dtype=np.int64)
    end = np.ascontiguousarray(end, dtype=np.int64)
    if start.shape != end.shape or (start.size and (start.min() < 0 or end.max() > buf.shape[0])):
        raise ValueError("ranges must lie inside buf")
    out = np.empty(start.shape[0], np.uint64)
    _hash_ranges_kernel(np.ascontiguousarray(buf, dtype=np.uint8), start, end, out)
    return out
