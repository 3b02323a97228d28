"""Fix batches: decode + validate a chunk of raw values at once."""

import numpy as np

from kernels.reasons import REASON_NAMES
from kernels.textparse import fnv1a64
from stream.batches import build_batch

VALUES = [
    b'{"officer_id": "A1", "ts": "2024-03-01T14:00:00Z", "lat": 52.95, "lon": -1.15, "accuracy_m": 8}',
    b'not json',
    b'{"officer_id": "B2", "ts": 1709301630000, "lat": 52.96, "lon": -1.16}',
    b'{"officer_id": "A1", "ts": 1709301660000, "lat": 95, "lon": -1.15}',
    b'{"officer_id": "A1", "ts": 1709301690000, "lat": 52.951, "lon": -1.151}',
    b'{"officer_id": "B2", "ts": 4102444800001, "lat": 52.96, "lon": -1.16}',
]


def _build():
    return build_batch(3, [100, 101, 102, 103, 104, 105], VALUES, time_min_ms=0, time_max_ms=4_102_444_800_000)


def test_build_keeps_valid_fixes_and_names_the_rest():
    batch, bad, reason = _build()
    assert batch.offset.tolist() == [100, 102, 104]
    assert (batch.first_offset, batch.last_offset, batch.partition) == (100, 105, 3)
    assert bad.tolist() == [1, 3, 5]
    assert [REASON_NAMES[int(r)] for r in reason] == ["malformed", "coordinates_out_of_range", "time_out_of_range"]
    assert batch.raw_value(1) == VALUES[2]
    ids = [batch.officer_id_bytes(i).decode() for i in range(len(batch))]
    assert ids == ["A1", "B2", "A1"]
    # The same hash as the CSV scanner gives the same bytes.
    buf = np.frombuffer(b"A1", np.uint8)
    assert batch.officer_hash[0] == batch.officer_hash[2] == fnv1a64(buf, 0, 2)


def test_empty_chunk_and_all_bad_chunk():
    batch, bad, _ = build_batch(0, [7], [b"{}"], time_min_ms=0, time_max_ms=2**62)
    assert len(batch) == 0 and bad.tolist() == [0]
    assert (batch.first_offset, batch.last_offset) == (7, 7)


# -- the one-call decode of a well-formed chunk equals the per-record path ---------------

import json as _json  # noqa: E402

import numpy as _np  # noqa: E402
from hypothesis import given as _given  # noqa: E402
from hypothesis import settings as _settings  # noqa: E402
from hypothesis import strategies as _st  # noqa: E402

from kernels.reasons import DUPLICATE_FIELD, OVERSIZED  # noqa: E402
from stream.fixes import MAX_FIX_BYTES  # noqa: E402
from stream.jsonfix import _decode_all_at_once, _decode_each  # noqa: E402

_records = _st.fixed_dictionaries(
    {"officer_id": _st.one_of(_st.integers(0, 10**9), _st.text(min_size=1, max_size=8).map(lambda t: " " + t)),
     "ts": _st.integers(-(2**63), 2**63 - 1), "lat": _st.floats(allow_nan=False, allow_infinity=False),
     "lon": _st.floats(allow_nan=False, allow_infinity=False)},
    optional={"accuracy_m": _st.one_of(_st.none(), _st.floats(-5, 100)), "source": _st.just("airwave")})


def _same(a, b) -> None:
    assert a.officer_ids == b.officer_ids
    for k in ("ts_ms", "lat", "lon", "accuracy_m", "status"):
        assert _np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), k


@_settings(max_examples=200, deadline=None)
@_given(records=_st.lists(_records, min_size=1, max_size=20))
def test_decoding_a_chunk_at_once_equals_record_by_record(records):
    values = [_json.dumps(r).encode() for r in records]
    fast = _decode_all_at_once(values)
    if fast is not None:  # None: a record the careful path must judge
        _same(fast, _decode_each(values))
    else:
        # An empty id, a time out of int64, or \u escapes (a key spelt with them could be a repeat).
        assert any(not str(r["officer_id"]).strip(" \t") or not -(2**62) < r["ts"] < 2**62 or b"\\u" in v
                   for r, v in zip(records, values))


def test_a_field_given_twice_is_refused_on_every_path():
    good = b'{"officer_id":"a","ts":1,"lat":52.9,"lon":-1.1,"accuracy_m":5}'
    twice = [b'{"officer_id":"a","officer_id":"b","ts":1,"lat":52.9,"lon":-1.1}',
             b'{"officer_id":"a","ts":1,"lat":52.9,"lon":-1.1,"lat":53.9}',
             b'{"officer_id":"a","ts":1,"lat":52.9,"lon":-1.1,"accuracy_m":5,"accuracy_m":500}',
             b'{"officer_id":"a","ts":1,"lat":52.9,"l\\u006fn":-1.1,"lon":-1.2}',  # one spelt with an escape
             b'{"officer_id":"a","ts":1,"lat":52.9,"lon":-1.1,"source":"x","source":null}']
    for value in twice:
        assert _decode_all_at_once([good, value]) is None, value  # never one call: msgspec keeps the last
        assert _decode_each([good, value]).status.tolist() == [0, DUPLICATE_FIELD], value
        batch, bad, reason = build_batch(0, [0, 1], [good, value], time_min_ms=0, time_max_ms=10)
        assert len(batch) == 1 and bad.tolist() == [1] and reason.tolist() == [DUPLICATE_FIELD], value
    # A key's name inside a string, a null optional field and repeats in different records are fine.
    fine = [good, b'{"officer_id":"lat","ts":1,"lat":52.9,"lon":-1.1,"source":"\\"lat\\":"}',
            b'{"officer_id":"a","ts":2,"lat":52.9,"lon":-1.1,"accuracy_m":null}']
    assert _decode_each(fine).status.tolist() == [0, 0, 0]
    assert _decode_all_at_once([good, fine[2]]).status.tolist() == [0, 0]


def test_records_longer_than_any_fix_are_oversized_and_not_decoded():
    good = b'{"officer_id":"a","ts":1,"lat":52.9,"lon":-1.1}'
    padded = good[:-1] + b',"pad":"' + b"x" * MAX_FIX_BYTES + b'"}'
    batch, bad, reason = build_batch(0, [0, 1, 2], [padded, good, b"[" * (MAX_FIX_BYTES + 1)], time_min_ms=0,
                                     time_max_ms=10)
    assert len(batch) == 1 and bad.tolist() == [0, 2] and reason.tolist() == [OVERSIZED, OVERSIZED]
    from stream.jsonfix import decode_records

    assert decode_records([padded, good]).status.tolist() == [OVERSIZED, 0]  # the replay's path too


def test_chunks_the_one_call_decode_leaves_to_the_careful_path():
    good = b'{"officer_id":"a","ts":1,"lat":52.9,"lon":-1.1}'
    for bad in (b'{"officer_id":"a",\n"ts":1,"lat":52.9,"lon":-1.1}', b"", b"   ", b"\xef\xbb\xbf" + good,
                b'{"officer_id":"a","ts":1,"lat":52.9}', b"not json", b'{"officer_id":"a","ts":"2024-03-30T12:00:00Z",'
                b'"lat":52.9,"lon":-1.1}'):
        assert _decode_all_at_once([good, bad, good]) is None, bad
    # Two records smuggled into one value, with an empty one to even the count: still refused.
    assert _decode_all_at_once([good + b"\n" + good, b""]) is None
