"""A numba scanner for the common shape of a JSON location fix, many records per call.

Stage 1 decodes every record it reads; with msgspec that is one Python
object per record and a pass per column. This scanner reads a packed buffer
of records (``buf[offsets[r]:offsets[r + 1]]``) and fills the columns
directly. It accepts only what it can decode exactly as the careful path
(msgspec, ``stream.jsonfix``) would: a flat object of plain ASCII strings
without escapes, JSON numbers it converts with correct rounding, ``null``,
``true``/``false``. Anything else (escapes, nesting, numeric strings, long
mantissas, duplicate keys, a missing field) gets :data:`FALLBACK` and is left
to the careful path, so the results are the same record for record.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels import reasons
from kernels.textparse import parse_time_ms

FALLBACK = -1

# No fastmath here: x / 10**k must stay one correctly rounded division.
_JIT = dict(nogil=True, cache=True)

_EXACT_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)

# Keys of a fix, packed: (start, end) of each in _KEYS.
_KEY_NAMES = (b"officer_id", b"ts", b"lat", b"lon", b"accuracy_m", b"device_id", b"source")
_KEYS = np.frombuffer(b"".join(_KEY_NAMES), dtype=np.uint8)
_KEY_BOUNDS = np.cumsum([0] + [len(k) for k in _KEY_NAMES]).astype(np.int64)
K_OFFICER, K_TS, K_LAT, K_LON, K_ACC, K_DEVICE, K_SOURCE = range(7)

# Value kinds.
V_STRING, V_INT, V_FLOAT, V_NULL, V_BOOL = range(5)


@njit(**_JIT)
def _ws(c):
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(**_JIT)
def _skip_ws(buf, i, end):
    while i < end and _ws(buf[i]):
        i += 1
    return i


@njit(**_JIT)
def _key_code(buf, s, e):
    for k in range(_KEY_BOUNDS.size - 1):
        a, b = _KEY_BOUNDS[k], _KEY_BOUNDS[k + 1]
        if b - a == e - s:
            same = True
            for j in range(b - a):
                if buf[s + j] != _KEYS[a + j]:
                    same = False
                    break
            if same:
                return k
    return -1


@njit(**_JIT)
def _string_end(buf, i, end):
    """``buf[i]`` is the opening quote; the index of the closing one, or -1 (escape, control, non-ASCII)."""
    i += 1
    while i < end:
        c = buf[i]
        if c == 34:
            return i
        if c == 92 or c < 32 or c >= 128:
            return -1
        i += 1
    return -1


@njit(**_JIT)
def _digit_run(buf, i, end, mant, sig):
    """Digits from ``buf[i]`` into the mantissa: (end, mantissa, significant digits, digits kept).

    Leading zeros are not significant; digits past the 18th are counted but
    not kept (the caller then leaves the number to the careful path).
    """
    kept = 0
    while i < end and 48 <= buf[i] <= 57:
        if sig > 0 or buf[i] != 48:
            sig += 1
        if sig <= 18:
            mant = mant * 10 + (buf[i] - 48)
            kept += 1
        i += 1
    return i, mant, sig, kept


@njit(**_JIT)
def _number(buf, i, end):
    """A JSON number at ``buf[i]``: (end index, kind, int value, float value, exact); end -1 if not one."""
    neg = False
    if i < end and buf[i] == 45:
        neg = True
        i += 1
    if i >= end or not (48 <= buf[i] <= 57):
        return -1, V_INT, 0, 0.0, False
    if buf[i] == 48 and i + 1 < end and 48 <= buf[i + 1] <= 57:
        return -1, V_INT, 0, 0.0, False  # a leading zero is not JSON
    i, mant, sig, _ = _digit_run(buf, i, end, np.int64(0), 0)
    frac = 0
    kind = V_INT
    if i < end and buf[i] == 46:
        kind = V_FLOAT
        i += 1
        if i >= end or not (48 <= buf[i] <= 57):
            return -1, V_INT, 0, 0.0, False
        i, mant, sig, frac = _digit_run(buf, i, end, mant, sig)
    exp10 = -frac
    if i < end and (buf[i] == 101 or buf[i] == 69):
        kind = V_FLOAT
        i += 1
        eneg = False
        if i < end and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        if i >= end or not (48 <= buf[i] <= 57):
            return -1, V_INT, 0, 0.0, False
        e = 0
        while i < end and 48 <= buf[i] <= 57:
            if e < 100000:
                e = e * 10 + (buf[i] - 48)
            i += 1
        exp10 += -e if eneg else e
    if sig > 15 or exp10 < -22 or exp10 > 22:
        # Beyond what one exact operation can round correctly (ints are exact up to 18 digits).
        exact = kind == V_INT and sig <= 18
        return i, kind, (-mant if neg else mant), 0.0, exact
    value = np.float64(mant)
    if exp10 < 0:
        value = value / _EXACT_POW10[-exp10]
    elif exp10 > 0:
        value = value * _EXACT_POW10[exp10]
    if neg:
        value = -value
    return i, kind, (-mant if neg else mant), value, True


@njit(**_JIT)
def _scan_one(buf, start, end, max_id_chars, out_id, out_ts, out_lat, out_lon, out_acc, r):
    """One record; returns its status (0, BAD_TIME, BAD_ACCURACY) or FALLBACK."""
    if end - start >= 3 and buf[start] == 0xEF and buf[start + 1] == 0xBB and buf[start + 2] == 0xBF:
        return FALLBACK  # byte-order mark
    i = _skip_ws(buf, start, end)
    if i >= end or buf[i] != 123:
        return FALLBACK
    i = _skip_ws(buf, i + 1, end)
    seen = 0
    id_s = id_e = -1
    ts_kind = -1
    ts_int = np.int64(0)
    ts_s = ts_e = 0
    acc = np.nan
    if i < end and buf[i] == 125:
        return FALLBACK  # {}: fields missing
    while True:
        if i >= end or buf[i] != 34:
            return FALLBACK
        ke = _string_end(buf, i, end)
        if ke < 0:
            return FALLBACK
        key = _key_code(buf, i + 1, ke)
        i = _skip_ws(buf, ke + 1, end)
        if i >= end or buf[i] != 58:
            return FALLBACK
        i = _skip_ws(buf, i + 1, end)
        if i >= end:
            return FALLBACK
        c = buf[i]
        vs = i
        ival = np.int64(0)
        fval = 0.0
        exact = True
        if c == 34:
            ve = _string_end(buf, i, end)
            if ve < 0:
                return FALLBACK
            kind = V_STRING
            i = ve + 1
        elif c == 110:  # null
            if end - i < 4 or buf[i + 1] != 117 or buf[i + 2] != 108 or buf[i + 3] != 108:
                return FALLBACK
            kind = V_NULL
            ve = i + 4
            i = ve
        elif c == 116 or c == 102:  # true / false
            n_lit = 4 if c == 116 else 5
            if end - i < n_lit:
                return FALLBACK
            if c == 116 and not (buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101):
                return FALLBACK
            if c == 102 and not (buf[i + 1] == 97 and buf[i + 2] == 108 and buf[i + 3] == 115
                                 and buf[i + 4] == 101):
                return FALLBACK
            kind = V_BOOL
            ve = i + n_lit
            i = ve
        else:
            ve, kind, ival, fval, exact = _number(buf, i, end)
            if ve < 0:
                return FALLBACK
            i = ve
        if key >= 0:
            if seen & (1 << key):
                return FALLBACK  # a duplicate key
            seen |= 1 << key
            if key == K_OFFICER:
                if kind != V_STRING:
                    return FALLBACK
                s, e = vs + 1, ve
                while s < e and (buf[s] == 32 or buf[s] == 9):
                    s += 1
                while e > s and (buf[e - 1] == 32 or buf[e - 1] == 9):
                    e -= 1
                if e == s or e - s > max_id_chars:
                    return FALLBACK
                id_s, id_e = s, e
            elif key == K_TS:
                if kind == V_INT and exact:
                    if not (-(2**62) < ival < 2**62):
                        return FALLBACK
                    ts_kind = V_INT
                    ts_int = ival
                elif kind == V_STRING:
                    ts_kind = V_STRING
                    ts_s, ts_e = vs + 1, ve
                    blank = True
                    for j in range(ts_s, ts_e):
                        if not _ws(buf[j]):
                            blank = False
                            break
                    if blank:
                        return FALLBACK  # an empty time: the careful path names it
                else:
                    return FALLBACK
            elif key == K_LAT or key == K_LON or key == K_ACC:
                if kind == V_NULL and key == K_ACC:
                    acc = np.nan  # as if absent
                elif (kind == V_INT or kind == V_FLOAT) and exact:
                    v = np.float64(ival) if kind == V_INT else fval
                    if key == K_LAT:
                        out_lat[r] = v
                    elif key == K_LON:
                        out_lon[r] = v
                    else:
                        acc = v
                else:
                    return FALLBACK
            else:  # device_id, source: a string or null
                if kind != V_STRING and kind != V_NULL:
                    return FALLBACK
        i = _skip_ws(buf, i, end)
        if i >= end:
            return FALLBACK
        if buf[i] == 44:
            i = _skip_ws(buf, i + 1, end)
            continue
        if buf[i] == 125:
            i = _skip_ws(buf, i + 1, end)
            if i != end:
                return FALLBACK  # something after the object
            break
        return FALLBACK
    need = (1 << K_OFFICER) | (1 << K_TS) | (1 << K_LAT) | (1 << K_LON)
    if seen & need != need:
        return FALLBACK
    out_id[r, 0] = id_s
    out_id[r, 1] = id_e
    out_acc[r] = acc
    # The careful path's order: a bad accuracy is found before a time string is parsed.
    if not np.isnan(acc) and not (acc >= 0.0 and acc < np.inf):
        out_ts[r] = ts_int if ts_kind == V_INT else 0
        return reasons.BAD_ACCURACY
    if ts_kind == V_INT:
        out_ts[r] = ts_int
        return 0
    ms, ok = parse_time_ms(buf, ts_s, ts_e)
    out_ts[r] = ms
    return 0 if ok else reasons.BAD_TIME


@njit(**_JIT)
def _scan_kernel(buf, offsets, max_id_chars, out_id, out_ts, out_lat, out_lon, out_acc, out_status):
    for r in range(offsets.size - 1):
        out_status[r] = _scan_one(buf, offsets[r], offsets[r + 1], max_id_chars, out_id, out_ts, out_lat, out_lon,
                                  out_acc, r)


def scan_fix_records(buf: np.ndarray, offsets: np.ndarray, max_id_chars: int):
    """Scan records ``buf[offsets[r]:offsets[r + 1]]``.

    Returns
    -------
    id_span : (n, 2) int64, the trimmed officer id's bytes in ``buf``
    ts_ms, lat, lon, accuracy_m : the fields (accuracy NaN when absent)
    status : int8, 0, ``BAD_TIME``, ``BAD_ACCURACY`` or :data:`FALLBACK`
    """
    n = offsets.size - 1
    id_span = np.zeros((n, 2), np.int64)
    ts = np.zeros(n, np.int64)
    lat = np.full(n, np.nan)
    lon = np.full(n, np.nan)
    acc = np.full(n, np.nan)
    status = np.zeros(n, np.int8)
    if n:
        _scan_kernel(buf, offsets, max_id_chars, id_span, ts, lat, lon, acc, status)
    return id_span, ts, lat, lon, acc, status


# Which fix keys start with each byte (a bit per key), so most quotes are passed over at one lookup.
_KEYS_STARTING = np.zeros(256, np.int64)
for _k, _name in enumerate(_KEY_NAMES):
    _KEYS_STARTING[_name[0]] |= 1 << _k


@njit(**_JIT)
def _first_repeated_key(buf, separator, starting):
    seen = 0
    record = 0
    n = buf.shape[0]
    for i in range(n - 1):
        c = buf[i]
        if c == separator:
            record += 1
            seen = 0
            continue
        if c != 34 or starting[buf[i + 1]] == 0:  # '"' then a letter some key starts with
            continue
        for k in range(_KEY_BOUNDS.size - 1):
            if not starting[buf[i + 1]] & (1 << k):
                continue
            a, b = _KEY_BOUNDS[k], _KEY_BOUNDS[k + 1]
            e = i + 1 + b - a
            if e >= n or buf[e] != 34:
                continue
            same = True
            for j in range(1, b - a):
                if buf[i + 1 + j] != _KEYS[a + j]:
                    same = False
                    break
            colon = _skip_ws(buf, e + 1, n)
            if same and colon < n and buf[colon] == 58:  # the name, '"', ':' (after spaces): a key
                if seen & (1 << k):
                    return record
                seen |= 1 << k
    return -1


def first_repeated_key(buf: np.ndarray, separator: int = 10) -> int:
    """The index of the first record (records separated by ``separator``) that gives a fix's key twice,
    or -1. In valid JSON a quoted name followed by ``:`` is always a key, so for records that are valid
    JSON and spell their keys without escapes this is exact."""
    return int(_first_repeated_key(buf, separator, _KEYS_STARTING)) if buf.shape[0] else -1
