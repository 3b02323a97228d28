"""Decode JSON location fixes (JSON Lines files and Kafka message values).

One decoder for both paths, so a record is judged the same way in a replay
and in the stream. Shape errors become reason codes, never exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec
import numpy as np

from kernels import reasons
from kernels.jsonscan import first_repeated_key
from kernels.textparse import parse_times
from stream.fixes import MAX_FIX_BYTES, MAX_ID_CHARS


class FixRecord(msgspec.Struct):
    """The wire shape of a location fix (design: Inputs)."""

    officer_id: str | int  # Airwave ISSIs are numbers
    ts: str | int
    lat: float
    lon: float
    # UNSET when absent, None when null: a key's occurrences can then be checked against the records.
    accuracy_m: float | None | msgspec.UnsetType = msgspec.UNSET
    device_id: str | None | msgspec.UnsetType = msgspec.UNSET
    source: str | None | msgspec.UnsetType = msgspec.UNSET


_BOM = b"\xef\xbb\xbf"
# Officer ids are trimmed of spaces and tabs only, as the CSV scanner does.
ID_TRIM = " \t"

# strict=False accepts numbers sent as strings ("52.95"), which exports do.
_DECODER = msgspec.json.Decoder(FixRecord, strict=False)


# Each field's key as it appears in a record ("lat"), to count them: msgspec keeps the last of two.
_REQUIRED_KEYS = tuple(f'"{name}"'.encode() for name in ("officer_id", "ts", "lat", "lon"))
_OPTIONAL_KEYS = tuple((name, f'"{name}"'.encode()) for name in ("accuracy_m", "device_id", "source"))


class _RepeatedField(ValueError):
    pass


def _unique_pairs(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _RepeatedField(keys)
    return dict(pairs)


def _repeats_a_field(raw: bytes) -> bool:
    """True if some object of this (well-formed) record has a key twice. A cheap count first: a key's
    text can also occur inside a string, so only then is the record parsed again to be sure."""
    if (b"\\u" not in raw and all(raw.count(k) <= 1 for k in _REQUIRED_KEYS)
            and all(raw.count(k) <= 1 for _, k in _OPTIONAL_KEYS)):
        return False  # (a key spelt with \u escapes is not counted: parsed)
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except _RepeatedField:
        return True
    except ValueError:  # what msgspec accepted and json does not (none known): judged by msgspec
        return False
    return False


def _each_field_once(joined: bytes) -> bool:
    """Whether every record of a decoded chunk (values joined by newlines) gives each fix key once.
    Keys spelt with \\u escapes would not be seen: such chunks go the careful way."""
    return b"\\u" not in joined and first_repeated_key(np.frombuffer(joined, np.uint8)) < 0


def _reason_of(error: msgspec.ValidationError) -> int:
    text = str(error)
    if "missing required field" in text or "got `null`" in text:
        return reasons.MISSING_FIELD
    return reasons.MALFORMED


class DecodedRecords:
    """Column form of decoded records, before time parsing and value checks."""

    __slots__ = ("index", "officer_ids", "ts_ms", "lat", "lon", "accuracy_m", "status")

    def __init__(self, n: int) -> None:
        self.index = np.arange(n, dtype=np.int64)
        self.officer_ids: list[str] = [""] * n
        self.ts_ms = np.zeros(n, np.int64)
        self.lat = np.full(n, np.nan)
        self.lon = np.full(n, np.nan)
        self.accuracy_m = np.full(n, np.nan)
        self.status = np.zeros(n, np.int8)


def decode_records(values: Sequence[bytes]) -> DecodedRecords:
    """Decode raw JSON values into columns with a reason code per record.

    Parameters
    ----------
    values : sequence of bytes
        One JSON object per item (a JSON Lines line or a Kafka value).

    Returns
    -------
    DecodedRecords
        ``status`` is 0 for a well-formed record, else a ``kernels.reasons``
        code (``malformed``, ``missing_field``, ``bad_time``).
    """
    if values and max(map(len, values)) > MAX_FIX_BYTES:
        return _without_oversized(values)
    fast = _decode_all_at_once(values)
    return fast if fast is not None else _decode_each(values)


def _without_oversized(values: Sequence[bytes]) -> DecodedRecords:
    """Records longer than any fix are ``oversized`` without being decoded; the rest as usual."""
    keep = [i for i, v in enumerate(values) if len(v) <= MAX_FIX_BYTES]
    out = DecodedRecords(len(values))
    out.status[:] = reasons.OVERSIZED
    if keep:
        rest = decode_records([values[i] for i in keep])
        at = np.asarray(keep, np.int64)
        for name in ("ts_ms", "lat", "lon", "accuracy_m", "status"):
            getattr(out, name)[at] = getattr(rest, name)
        for j, i in enumerate(keep):
            out.officer_ids[i] = rest.officer_ids[j]
    return out


def _decode_all_at_once(values: Sequence[bytes]) -> DecodedRecords | None:
    """The common case, a chunk of well-formed records, in one msgspec call; None when any record
    needs the careful per-record path (the results are the same: tests/test_readers.py).

    Values are joined with newlines and decoded as JSON Lines. That maps
    records to values one to one only if no value holds a newline (counted
    in C) and none is blank (the count of decoded records would drop), so
    both are checked; anything else (a bad record, a byte-order mark) falls
    back.
    """
    n = len(values)
    if n == 0:
        return None
    joined = b"\n".join(values)
    if joined.count(b"\n") != n - 1 or _BOM in joined:
        return None
    try:
        recs = _DECODER.decode_lines(joined)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, ValueError):
        return None
    if len(recs) != n or not _each_field_once(joined):
        return None
    ids = [(o if type(o) is str else str(o)).strip(ID_TRIM) for o in (r.officer_id for r in recs)]
    if not all(ids) or max(map(len, ids)) > MAX_ID_CHARS:
        return None
    ts = [r.ts for r in recs]
    if not all(type(t) is int and -(2**62) < t < 2**62 for t in ts):
        return None
    out = DecodedRecords(n)
    out.officer_ids = ids
    out.ts_ms = np.fromiter(ts, np.int64, n)
    out.lat = np.fromiter((r.lat for r in recs), np.float64, n)
    out.lon = np.fromiter((r.lon for r in recs), np.float64, n)
    unset = msgspec.UNSET
    acc = [None if a is unset else a for a in (r.accuracy_m for r in recs)]
    if any(a is not None for a in acc):
        out.accuracy_m = np.array([np.nan if a is None else a for a in acc], np.float64)
        bad = np.array([a is not None for a in acc]) & ~((out.accuracy_m >= 0.0) & (out.accuracy_m < np.inf))
        out.status[bad] = reasons.BAD_ACCURACY
    return out


def _decode_each(values: Sequence[bytes]) -> DecodedRecords:
    n = len(values)
    out = DecodedRecords(n)
    ts_text: list[bytes] = [b""] * n
    for i, raw in enumerate(values):
        if raw[:3] == _BOM:
            raw = raw[3:]
        try:
            rec = _DECODER.decode(raw)
        except msgspec.ValidationError as exc:
            out.status[i] = _reason_of(exc)
            continue
        except (msgspec.DecodeError, UnicodeDecodeError, ValueError):
            # Invalid UTF-8 inside a string surfaces as UnicodeDecodeError.
            out.status[i] = reasons.MALFORMED
            continue
        if _repeats_a_field(raw):
            out.status[i] = reasons.DUPLICATE_FIELD
            continue
        officer = str(rec.officer_id).strip(ID_TRIM)
        if not officer:
            out.status[i] = reasons.MISSING_FIELD
            continue
        if len(officer) > MAX_ID_CHARS:
            out.status[i] = reasons.MALFORMED
            continue
        out.officer_ids[i] = officer
        ts = rec.ts
        if isinstance(ts, int):
            out.ts_ms[i] = ts if -(2**62) < ts < 2**62 else 0
            if not -(2**62) < ts < 2**62:
                out.status[i] = reasons.BAD_TIME
        elif not ts.strip():
            out.status[i] = reasons.MISSING_FIELD  # as an empty CSV field
            continue
        else:
            ts_text[i] = ts.encode("utf-8", "replace")
        out.lat[i] = rec.lat
        out.lon[i] = rec.lon
        if rec.accuracy_m is not None and rec.accuracy_m is not msgspec.UNSET:
            out.accuracy_m[i] = rec.accuracy_m
            if not (rec.accuracy_m >= 0.0 and rec.accuracy_m < float("inf")):
                out.status[i] = out.status[i] or reasons.BAD_ACCURACY
    # Time strings are parsed in one numba call over a packed buffer.
    text_rows = np.fromiter((i for i in range(n) if ts_text[i] and out.status[i] == 0), dtype=np.int64)
    if text_rows.size:
        lengths = np.fromiter((len(ts_text[i]) for i in text_rows), dtype=np.int64, count=text_rows.size)
        offsets = np.zeros(text_rows.size + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        buf = np.frombuffer(b"".join(ts_text[i] for i in text_rows), dtype=np.uint8)
        ms, ok = parse_times(buf, offsets)
        out.ts_ms[text_rows] = ms
        out.status[text_rows[~ok]] = reasons.BAD_TIME
    return out
