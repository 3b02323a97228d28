"""Scan CSV bytes into fix columns without one Python object per row.

One pass over a chunk of complete lines: split fields (RFC 4180 quoting,
no newlines inside quotes), parse time and coordinates, hash the officer id.
Per-row problems become reason codes (``kernels.reasons``), never exceptions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from kernels import reasons
from kernels._config import JIT_OPTIONS
from kernels.textparse import fnv1a64, parse_float, parse_time_ms


class ScannedRows(NamedTuple):
    """One entry per non-blank line of the chunk."""

    line: np.ndarray  # int64, 1-based line number in the file
    officer_start: np.ndarray  # int64, byte span of the officer id in the chunk
    officer_end: np.ndarray  # int64
    officer_hash: np.ndarray  # uint64, FNV-1a of the officer id (unescaped when quoted)
    officer_quoted: np.ndarray  # bool, the id was quoted (may hold "" escapes)
    ts_ms: np.ndarray  # int64, epoch milliseconds
    lat: np.ndarray  # float64, degrees
    lon: np.ndarray  # float64, degrees
    accuracy_m: np.ndarray  # float64, metres (NaN when absent)
    status: np.ndarray  # int8, kernels.reasons code (0 = parsed)


@njit(**JIT_OPTIONS)
def _scan_kernel(buf, first_line, delim, n_header, col_officer, col_ts, col_lat, col_lon, col_acc,
                 out_line, out_ostart, out_oend, out_hash, out_quoted, out_ts, out_lat, out_lon, out_acc, out_status):
    n = buf.shape[0]
    # Spans of the five columns we read, whatever the number of columns.
    want = np.array([col_officer, col_ts, col_lat, col_lon, col_acc], dtype=np.int64)
    fstart = np.zeros(5, dtype=np.int64)
    fend = np.zeros(5, dtype=np.int64)
    quoted = np.zeros(5, dtype=np.bool_)
    pos = 0
    line = first_line
    k = 0
    while pos < n:
        # Split one line into fields.
        nf = 0
        bad = False
        i = pos
        while True:
            fs = i
            is_quoted = i < n and buf[i] == 34
            if is_quoted:
                i += 1
                fs = i
                while True:
                    if i >= n or buf[i] == 10:
                        bad = True  # unterminated quote
                        break
                    if buf[i] == 34:
                        if i + 1 < n and buf[i + 1] == 34:
                            i += 2
                            continue
                        break
                    i += 1
                fe = i
                if not bad:
                    i += 1  # closing quote
                    if i < n and buf[i] != delim and buf[i] != 10 and buf[i] != 13:
                        bad = True
            else:
                while i < n and buf[i] != delim and buf[i] != 10:
                    i += 1
                fe = i
            if bad:
                while i < n and buf[i] != 10:
                    i += 1
                break
            for slot in range(5):
                if want[slot] == nf:
                    fstart[slot] = fs
                    fend[slot] = fe
                    quoted[slot] = is_quoted
            nf += 1
            while i < n and buf[i] == 13:
                i += 1
            if i >= n or buf[i] == 10:
                break
            i += 1  # delimiter
        line_end = i
        # A blank line (or only a CR) is not a row.
        blank = (not bad) and nf == 1 and line_end - pos <= 1 and (line_end == pos or buf[pos] == 13)
        if not blank:
            status = reasons.ACCEPTED
            if bad or nf != n_header:
                status = reasons.MALFORMED
            out_line[k] = line
            out_ostart[k] = 0
            out_oend[k] = 0
            out_hash[k] = 0
            out_quoted[k] = False
            out_ts[k] = 0
            out_lat[k] = np.nan
            out_lon[k] = np.nan
            out_acc[k] = np.nan
            if status == reasons.ACCEPTED:
                os_, oe = fstart[0], fend[0]
                while os_ < oe and (buf[os_] == 32 or buf[os_] == 9):
                    os_ += 1
                while oe > os_ and (buf[oe - 1] == 32 or buf[oe - 1] == 9 or buf[oe - 1] == 13):
                    oe -= 1
                out_ostart[k] = os_
                out_oend[k] = oe
                # A quoted id hashes as its unescaped text ("" -> "), as in JSON.
                out_hash[k] = _hash_unescaped(buf, os_, oe) if quoted[0] else fnv1a64(buf, os_, oe)
                out_quoted[k] = quoted[0]
                if oe == os_:
                    status = reasons.MISSING_FIELD
            if status == reasons.ACCEPTED:
                ts0, ts1 = fstart[1], fend[1]
                la0, la1 = fstart[2], fend[2]
                lo0, lo1 = fstart[3], fend[3]
                if _blank(buf, ts0, ts1) or _blank(buf, la0, la1) or _blank(buf, lo0, lo1):
                    status = reasons.MISSING_FIELD
                else:
                    ts, ok = parse_time_ms(buf, ts0, ts1)
                    out_ts[k] = ts
                    if not ok:
                        status = reasons.BAD_TIME
                    lat, ok_lat = parse_float(buf, la0, la1)
                    lon, ok_lon = parse_float(buf, lo0, lo1)
                    out_lat[k] = lat
                    out_lon[k] = lon
                    if status == reasons.ACCEPTED and not (ok_lat and ok_lon):
                        status = reasons.BAD_COORDINATES
                    if col_acc >= 0 and not _blank(buf, fstart[4], fend[4]):
                        acc, ok_acc = parse_float(buf, fstart[4], fend[4])
                        out_acc[k] = acc
                        if status == reasons.ACCEPTED and not (ok_acc and acc >= 0.0 and acc < np.inf):
                            status = reasons.BAD_ACCURACY
            out_status[k] = status
            k += 1
        pos = line_end + 1
        line += 1
    return k


@njit(**JIT_OPTIONS)
def _hash_unescaped(buf, start, end):
    h = np.uint64(0xCBF29CE484222325)
    i = start
    while i < end:
        h = (h ^ np.uint64(buf[i])) * np.uint64(0x100000001B3)
        i += 2 if buf[i] == 34 and i + 1 < end and buf[i + 1] == 34 else 1
    return h


@njit(**JIT_OPTIONS)
def _blank(buf, start, end):
    for i in range(start, end):
        c = buf[i]
        if c != 32 and c != 9 and c != 13:
            return False
    return True


def scan_csv_chunk(buf: np.ndarray, *, first_line: int, delimiter: bytes, n_header: int,
                   col_officer: int, col_ts: int, col_lat: int, col_lon: int,
                   col_accuracy: int = -1) -> ScannedRows:
    """Scan a chunk of complete CSV lines (no header) into columns.

    Parameters
    ----------
    buf : ndarray of uint8, shape (n_bytes,)
        Whole lines; a final line without a newline is allowed.
    first_line : int
        1-based file line number of the first line in ``buf``.
    delimiter : bytes
        One byte, e.g. ``b","``.
    n_header : int
        Number of header fields; a row with another count is ``malformed``.
    col_officer, col_ts, col_lat, col_lon : int
        Field positions of the required columns.
    col_accuracy : int
        Field position of ``accuracy_m``, or -1 when the file has none.

    Returns
    -------
    ScannedRows
        One entry per non-blank line; ``status`` holds a ``kernels.reasons``
        code, 0 when every required field parsed.
    """
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    if buf.ndim != 1:
        raise ValueError("buf must be a 1-d uint8 array")
    if len(delimiter) != 1:
        raise ValueError(f"delimiter must be one byte, got {delimiter!r}")
    cols = (col_officer, col_ts, col_lat, col_lon)
    if min(cols) < 0 or max(cols) >= n_header or col_accuracy >= n_header:
        raise ValueError(f"column positions {cols + (col_accuracy,)} do not fit a header of {n_header} fields")
    cap = int(np.count_nonzero(buf == 10)) + 1
    out = ScannedRows(
        np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64),
        np.empty(cap, np.uint64), np.empty(cap, np.bool_), np.empty(cap, np.int64), np.empty(cap, np.float64),
        np.empty(cap, np.float64), np.empty(cap, np.float64), np.empty(cap, np.int8),
    )
    k = _scan_kernel(buf, first_line, delimiter[0], n_header, col_officer, col_ts, col_lat, col_lon,
                     col_accuracy, *out)
    return ScannedRows(*(a[:k] for a in out))
