"""The numba JSON scanner decides a record exactly as the careful msgspec path does, or leaves it."""

import json
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.jsonscan import FALLBACK, first_repeated_key, scan_fix_records
from stream.fixes import MAX_ID_CHARS
from stream.jsonfix import _decode_each
from stream.producer import fix_json


def _scan(values):
    bounds = np.zeros(len(values) + 1, np.int64)
    np.cumsum([len(v) for v in values], out=bounds[1:])
    blob = np.frombuffer(b"".join(values), np.uint8)
    return blob, scan_fix_records(blob, bounds, MAX_ID_CHARS)


def _assert_same_as_careful(values):
    blob, (span, ts, lat, lon, acc, status) = _scan(values)
    careful = _decode_each(values)
    for r, v in enumerate(values):
        if status[r] == FALLBACK:
            continue
        assert status[r] == careful.status[r], v
        if status[r] == 0:
            assert blob[span[r, 0]:span[r, 1]].tobytes().decode() == careful.officer_ids[r], v
            assert ts[r] == careful.ts_ms[r], v
            for mine, theirs in ((lat, careful.lat), (lon, careful.lon), (acc, careful.accuracy_m)):
                assert np.array_equal(mine[r:r + 1], theirs[r:r + 1], equal_nan=True), v
    return status


_number_text = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-180, 180).map(lambda f: f"{f:.7f}"),
    st.floats(-180, 180).map(lambda f: f"{f:.17g}"),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["1e5", "1E-3", "-0", "-0.0", "0.1e1", "01", "1.", ".5", "+1", "1e", "NaN", "Infinity", "-",
                     "123456789012345678901234567890", "52.950000000000000001"]),
)
_string_text = st.one_of(
    st.text(max_size=6).map(json.dumps),
    st.text(max_size=6).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(['"  A1\\t"', '"a\\"b"', '"\\u0041"', '""', '" "', '"x' + "y" * 70 + '"',
                     '"2024-03-30T12:00:00Z"', '"2024-03-30T12:00:00+01:00"', '"2024-02-30T12:00:00Z"',
                     '"1711800000000"', '"52.95"']),
)
_value_text = st.one_of(_number_text, _string_text, st.sampled_from(["null", "true", "false", "{}", "[1]",
                                                                      '{"a":1}', "nul", "tru"]))
_keys = st.sampled_from(["officer_id", "ts", "lat", "lon", "accuracy_m", "device_id", "source", "speed",
                         "officer\\u005fid"])
_space = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


_plain_id = st.from_regex(r"[A-Za-z0-9 \t_-]{0,10}", fullmatch=True).map(json.dumps)
_coordinate = st.one_of(st.floats(-200, 200).map(lambda f: f"{f:.6f}"), st.integers(-200, 200).map(str),
                        st.floats(-1, 1).map(lambda f: f"{f:.3e}"))
_time_text = st.one_of(st.integers(0, 2**62).map(str), st.sampled_from(
    ['"2024-03-30T12:00:00Z"', '"2024-03-30T12:00:00.250+01:00"', '"2024-02-30T12:00:00Z"', '"1711800000000"',
     '"yesterday"', '"2024-03-30 12:00:00"']))


def _often(draw, usual, odd):
    return draw(odd) if draw(st.integers(0, 9)) == 0 else draw(usual)


@st.composite
def _records(draw):
    """Raw JSON-ish values: mostly plausible fixes, with every kind of oddity now and then."""
    fields = {"officer_id": _often(draw, _plain_id, st.one_of(_string_text, st.integers(0, 10**9).map(str))),
              "ts": _often(draw, _time_text, st.one_of(_string_text, _number_text)),
              "lat": _often(draw, _coordinate, _value_text), "lon": _often(draw, _coordinate, _value_text)}
    pairs = [(k, v) for k, v in fields.items() if draw(st.integers(0, 20)) > 0]  # sometimes a field is missing
    if draw(st.booleans()):
        pairs.append(("accuracy_m", _often(draw, st.one_of(_coordinate, st.just("null")), _value_text)))
    if draw(st.integers(0, 3)) == 0:
        pairs += draw(st.lists(st.tuples(_keys, _value_text), max_size=3))
    pairs = draw(st.permutations(pairs))
    ws = draw(_space)
    body = "{" + ws + ("," + ws).join(f'"{k}"{draw(_space)}:{draw(_space)}{v}' for k, v in pairs) + ws + "}"
    odd_ends = draw(st.integers(0, 9)) == 0
    tail = draw(st.sampled_from(["", " ", "\n", "x", "}", ","])) if odd_ends else ""
    head = draw(st.sampled_from(["", " ", "\ufeff"])) if odd_ends else ""
    data = (head + body + tail).encode("utf-8")
    return data[:len(data) // 2] if draw(st.integers(0, 19)) == 0 else data


@settings(max_examples=1500, deadline=None)
@given(values=st.lists(_records(), min_size=1, max_size=12))
def test_every_record_the_scanner_decides_is_decided_as_the_careful_path_does(values):
    _assert_same_as_careful(values)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.tuples(st.text(min_size=1, max_size=10), st.integers(0, 2**61),
                                  st.floats(-90, 90), st.floats(-180, 180),
                                  st.one_of(st.none(), st.floats(-10, 100))), min_size=1, max_size=20))
def test_fixes_as_json_dumps_writes_them(records):
    values = []
    for officer, ts, lat, lon, accuracy in records:
        record = {"officer_id": officer, "ts": ts, "lat": lat, "lon": lon}
        if accuracy is not None:
            record["accuracy_m"] = accuracy
        values.append(json.dumps(record).encode())
    status = _assert_same_as_careful(values)
    for (officer, *_), v, s in zip(records, values, status):
        if "\\" in v.decode() or not officer.strip(" \t"):
            assert s == FALLBACK, v  # escapes and blank ids are the careful path's to judge


def test_the_simulators_records_all_take_the_fast_path():
    values = [fix_json(f"officer-{i}", 1_711_800_000_000 + i * 30_000, 52.95 + i * 1e-5, -1.15 - i * 1e-5,
                       accuracy_m=8.0 if i % 2 else None) for i in range(500)]
    status = _assert_same_as_careful(values)
    assert (status == 0).all()


_KEY_NAMES_TEXT = ["officer_id", "ts", "lat", "lon", "accuracy_m", "device_id", "source", "speed"]
_json_values = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                         st.none(), st.booleans(), st.sampled_from(['lat', '"lon":', "a,b", "ts\":", "{}"]))


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.lists(st.tuples(st.sampled_from(_KEY_NAMES_TEXT), _json_values), max_size=9),
                        min_size=1, max_size=6), spaces=st.sampled_from(["", " ", "\t "]))
def test_first_repeated_key_finds_the_records_json_would_see_a_fix_key_twice_in(records, spaces):
    texts = ["{" + ",".join(f"{spaces}{json.dumps(k)}{spaces}:{spaces}{json.dumps(v)}" for k, v in pairs) + "}"
             for pairs in records]
    fix_keys = set(_KEY_NAMES_TEXT[:7])
    repeated = [i for i, pairs in enumerate(records)
                if any(n > 1 for k, n in Counter(k for k, _ in pairs).items() if k in fix_keys)]
    got = first_repeated_key(np.frombuffer("\n".join(texts).encode(), np.uint8))
    assert got == (repeated[0] if repeated else -1)
