"""Decode JSON location fixes (JSON Lines files and Kafka message values).

One decoder for both paths, so a record is judged the same way in a replay
and in the stream. Shape errors become reason codes, never exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np

from kernels import reasons
from kernels.textparse import parse_times
from stream.fixes import MAX_ID_CHARS


class FixRecord(msgspec.Struct):
    """The wire shape of a location fix (design: Inputs)."""

    officer_id: str | int  # Airwave ISSIs are numbers
    ts: str | int
    lat: float
    lon: float
    accuracy_m: float | None = None
    device_id: str | None = None
    source: str | None = None


_BOM = b"\xef\xbb\xbf"
# Officer ids are trimmed of spaces and tabs only, as the CSV scanner does.
ID_TRIM = " \t"

# strict=False accepts numbers sent as strings ("52.95"), which exports do.
_DECODER = msgspec.json.Decoder(FixRecord, strict=False)


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
        else:
            ts_text[i] = ts.encode("utf-8", "replace")
        out.lat[i] = rec.lat
        out.lon[i] = rec.lon
        if rec.accuracy_m is not None:
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
