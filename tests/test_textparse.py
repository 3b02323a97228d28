"""Byte parsers against Python's own float() and datetime.fromisoformat()."""

import datetime as dt

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.textparse import parse_float, parse_time_ms, parse_times


def _pf(text: str):
    b = np.frombuffer(text.encode(), np.uint8)
    return parse_float(b, 0, b.size)


def _pt(text: str):
    b = np.frombuffer(text.encode(), np.uint8)
    return parse_time_ms(b, 0, b.size)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-180, max_value=180, allow_nan=False))
def test_parse_float_matches_python_for_coordinates(v):
    for text in (repr(v), f"{v:.4f}", f"{v:.6f}", f"{v:e}"):
        got, ok = _pf(text)
        assert ok
        assert got == float(text) or abs(got - float(text)) <= 1e-15 * max(1.0, abs(float(text)))


def test_parse_float_short_decimals_are_exact():
    # Clinger's fast path: 4-6 decimal coordinates are correctly rounded.
    for text in ("-1.0943", "52.955", "0.1", "-0.0001", "53.123456", "1e1", "-2.5E-1", "+7"):
        got, ok = _pf(text)
        assert ok and got == float(text), text


def test_parse_float_rejects_garbage_and_reads_nan():
    for text in ("", " ", "abc", "1.2.3", "1e", "--1", "1,5", "."):
        assert not _pf(text)[1], text
    got, ok = _pf("NaN")
    assert ok and np.isnan(got)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2099, 12, 31)),
       st.integers(min_value=-14 * 60, max_value=14 * 60), st.sampled_from(["T", " "]),
       st.booleans())
def test_parse_time_matches_fromisoformat(local, offset_min, sep, with_ms):
    tz = dt.timezone(dt.timedelta(minutes=offset_min))
    local = local.replace(microsecond=(local.microsecond // 1000) * 1000 if with_ms else 0, tzinfo=tz)
    text = local.isoformat(sep=sep, timespec="milliseconds" if with_ms else "seconds")
    if offset_min == 0 and with_ms:
        text = text.replace("+00:00", "Z")
    got, ok = _pt(text)
    assert ok, text
    assert got == int(round(local.timestamp() * 1000)), text


def test_parse_time_epoch_ms_and_errors():
    assert _pt("1711846800000") == (1711846800000, True)
    for bad in ("2024-02-30T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z",
                "2024-01-01T00:00:00", "2024-01-01T00:00:00+1:00", "yesterday", "", "2024-01-01T00:00:00.Z",
                "2024-01-01T00:00:00Zjunk", "12.5"):
        assert not _pt(bad)[1], bad


def test_parse_times_packs_many():
    texts = [b"2024-03-31T00:59:59Z", b"bad", b"1000"]
    offsets = np.cumsum([0] + [len(t) for t in texts])
    ms, ok = parse_times(np.frombuffer(b"".join(texts), np.uint8), offsets)
    assert ok.tolist() == [True, False, True]
    assert ms[0] == int(dt.datetime(2024, 3, 31, 0, 59, 59, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert ms[2] == 1000
