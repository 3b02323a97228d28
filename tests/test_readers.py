"""Reading fix exports: every bad row is reported with its line and reason."""

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.reasons import REASON_NAMES
from stream.fixes import OfficerRegistry
from stream.readers import FixFileError, read_fixes

GOOD_AND_BAD_CSV = """officer_id,ts,lat,lon,accuracy_m
A1,2024-03-01T14:00:00Z,52.95,-1.15,10
A1,2024-03-01T14:00:30+00:00,52.9501,-1.1501,
"B,2",1709301600000,52.96,-1.16,5
A1,not a time,52.95,-1.15,10
A1,2024-03-01T14:01:00Z,,-1.15,10
,2024-03-01T14:01:00Z,52.95,-1.15,10
A1,2024-03-01T14:01:00Z,NaN,-1.15,10
A1,2024-03-01T14:01:00Z,95.0,-1.15,10
A1,2024-03-01T14:01:00Z,0,0,10
A1,2024-03-01T14:01:00Z,52.95,-1.15,-3
A1,2024-03-01T14:01:00Z,52.95
A1,1990-01-01T00:00:00Z,52.95,-1.15,10

B,2",2024-03-01T14:02:00Z,52.96,-1.16,5
"""

EXPECTED_REJECTS = {5: "bad_time", 6: "missing_field", 7: "missing_field", 8: "bad_coordinates",
                    9: "coordinates_out_of_range", 10: "null_island", 11: "bad_accuracy", 12: "malformed",
                    13: "time_out_of_range", 15: "malformed"}


def _read_all(path):
    reg = OfficerRegistry()
    fixes, rejects = [], []
    for f, r in read_fixes(path, reg):
        fixes.append(f)
        rejects.append(r)
    rows = np.concatenate([f.row for f in fixes])
    officers = [reg.id_of(int(c)) for f in fixes for c in f.officer]
    bad = {int(r): REASON_NAMES[int(c)] for part in rejects for r, c in zip(part.row, part.reason)}
    return rows, officers, bad, fixes


def test_csv_rows_and_rejects_by_line(tmp_path):
    path = tmp_path / "fixes.csv"
    path.write_text(GOOD_AND_BAD_CSV)
    rows, officers, bad, fixes = _read_all(path)
    assert rows.tolist() == [2, 3, 4]
    assert officers == ["A1", "A1", "B,2"]
    assert bad == EXPECTED_REJECTS
    assert np.isnan(fixes[0].accuracy_m[1]) and fixes[0].accuracy_m[0] == 10


def test_gzip_and_small_chunks_give_the_same_result(tmp_path):
    from stream.readers import ReadOptions

    plain = tmp_path / "fixes.csv"
    plain.write_text(GOOD_AND_BAD_CSV)
    gz = tmp_path / "fixes.csv.gz"
    gz.write_bytes(gzip.compress(GOOD_AND_BAD_CSV.encode()))
    reg = OfficerRegistry()
    chunks = list(read_fixes(gz, reg, ReadOptions(chunk_bytes=40)))
    assert len(chunks) > 3
    rows = np.concatenate([f.row for f, _ in chunks])
    bad = {int(r): REASON_NAMES[int(c)] for _, part in chunks for r, c in zip(part.row, part.reason)}
    assert rows.tolist() == [2, 3, 4] and bad == EXPECTED_REJECTS


def test_json_lines(tmp_path):
    path = tmp_path / "fixes.jsonl"
    path.write_text("\n".join([
        '{"officer_id": "A1", "ts": "2024-03-01T14:00:00Z", "lat": 52.95, "lon": -1.15}',
        '{"officer_id": "A1", "ts": 1709301630000, "lat": "52.95", "lon": -1.15, "source": "airwave"}',
        '{"officer_id": "A1", "ts": "2024-03-01T14:00:00", "lat": 52.95, "lon": -1.15}',
        '{"officer_id": "A1", "lat": 52.95, "lon": -1.15}',
        '{"officer_id": "A1", "ts": 1709301630000, "lat": null, "lon": -1.15}',
        '{"officer_id": "A1", "ts": 1709301630000, "lat": 52.9',
        '[1, 2]',
        '',
        '{"officer_id": "A1", "ts": 1709301690000, "lat": 0, "lon": 0}',
    ]) + "\n")
    rows, officers, bad, fixes = _read_all(path)
    assert rows.tolist() == [1, 2]
    assert bad == {3: "bad_time", 4: "missing_field", 5: "missing_field", 6: "malformed", 7: "malformed",
                   9: "null_island"}
    assert fixes[0].ts_ms.tolist() == [1709301600000, 1709301630000]


def test_file_without_required_columns_is_a_clear_error(tmp_path):
    path = tmp_path / "fixes.csv"
    path.write_text("officer,time,lat,lon\nA,1,2,3\n")
    with pytest.raises(FixFileError, match=r"fixes.csv: line 1: header lacks required column\(s\) officer_id, ts"):
        list(read_fixes(path, OfficerRegistry()))


def test_registry_gives_one_code_per_officer_across_csv_and_json():
    reg = OfficerRegistry()
    a = reg.codes_of(["x", "y", "x"])
    buf = np.frombuffer(b"yz", np.uint8)
    from kernels.textparse import fnv1a64

    h = np.array([fnv1a64(buf, 0, 1), fnv1a64(buf, 1, 2)], np.uint64)
    b = reg.codes_of_hashes(h, buf, np.array([0, 1]), np.array([1, 2]))
    assert a.tolist() == [0, 1, 0] and b.tolist() == [1, 2] and reg.id_of(2) == "z"


# --- hostile files (regressions from the first review) -----------------------


def test_invalid_utf8_inside_json_is_malformed_not_a_crash(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"officer_id":"A","ts":1709560800000,"lat":52.9,"lon":-1.1,"source":"\xc3"}\n'
                     b'\xef\xbb\xbf{"officer_id":123,"ts":1709560800000,"lat":52.9,"lon":-1.1}\n')
    rows, officers, bad, _ = _read_all(path)
    assert bad == {1: "malformed"} and officers == ["123"]


def test_utf16_export_is_a_clear_file_error(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes("officer_id,ts,lat,lon\nA,1,2,3\n".encode("utf-16"))
    with pytest.raises(FixFileError, match="not UTF-8"):
        list(read_fixes(path, OfficerRegistry()))


def test_required_columns_far_to_the_right(tmp_path):
    path = tmp_path / "f.csv"
    extra = ",".join(f"x{i}" for i in range(70))
    path.write_text(f"{extra},officer_id,ts,lat,lon\n" + ",".join("" for _ in range(70))
                    + ",A,1709560800000,52.9,-1.1\n")
    rows, officers, bad, _ = _read_all(path)
    assert rows.tolist() == [2] and officers == ["A"] and bad == {}


def test_truncated_gzip_keeps_what_was_read_and_says_where_it_stopped(tmp_path):
    lines = "".join(f"A,{1709560800000 + i * 1000},52.9,-1.1\n" for i in range(20000))
    data = gzip.compress(("officer_id,ts,lat,lon\n" + lines).encode())
    path = tmp_path / "f.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    from stream.readers import ReadOptions

    reg = OfficerRegistry()
    chunks = list(read_fixes(path, reg, ReadOptions(chunk_bytes=4096)))
    rows = np.concatenate([f.row for f, _ in chunks])
    bad = {int(r): REASON_NAMES[int(c)] for _, part in chunks for r, c in zip(part.row, part.reason)}
    assert rows.size > 1000 and list(bad.values()) == ["truncated_file"]
    assert list(bad) == [int(rows.max()) + 1]


def test_a_file_named_gz_that_is_not_gzip(tmp_path):
    path = tmp_path / "f.csv.gz"
    path.write_text("officer_id,ts,lat,lon\n")
    with pytest.raises(FixFileError, match="not a gzip file"):
        list(read_fixes(path, OfficerRegistry()))


def test_quoted_ids_with_escaped_quotes_match_json(tmp_path):
    csv_path = tmp_path / "f.csv"
    csv_path.write_text('officer_id,ts,lat,lon\n"A""B",1709560800000,52.9,-1.1\n')
    json_path = tmp_path / "f.jsonl"
    json_path.write_text('{"officer_id": "A\\"B", "ts": 1709560800000, "lat": 52.9, "lon": -1.1}\n')
    reg = OfficerRegistry()
    (a, _), = read_fixes(csv_path, reg)
    (b, _), = read_fixes(json_path, reg)
    assert a.officer.tolist() == b.officer.tolist() == [0] and reg.id_of(0) == 'A"B'


def test_officer_ids_that_are_not_utf8_are_malformed_not_merged(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"officer_id,ts,lat,lon\n\xff,1709560800000,52.9,-1.1\n\xfe,1709560800000,52.9,-1.1\n"
                     b"ok,1709560800000,52.9,-1.1\n")
    rows, officers, bad, _ = _read_all(path)
    assert officers == ["ok"] and bad == {2: "malformed", 3: "malformed"}


def test_officer_ids_longer_than_64_characters_are_malformed(tmp_path):
    long_id = "x" * 65
    csv_path = tmp_path / "f.csv"
    csv_path.write_text(f"officer_id,ts,lat,lon\n{long_id},1709560800000,52.9,-1.1\nok,1709560800000,52.9,-1.1\n")
    json_path = tmp_path / "f.jsonl"
    json_path.write_text(f'{{"officer_id": "{long_id}", "ts": 1709560800000, "lat": 52.9, "lon": -1.1}}\n')
    assert _read_all(csv_path)[2] == {2: "malformed"}
    assert _read_all(json_path)[2] == {1: "malformed"}


@settings(max_examples=50, deadline=None)
@given(batches=st.lists(st.lists(st.text(min_size=1, max_size=4), max_size=300), max_size=12))
def test_registry_codes_follow_first_appearance_through_table_growth(batches):
    reg = OfficerRegistry()
    want: dict[str, int] = {}
    for ids in batches:
        got = reg.codes_of(ids)
        for officer in ids:
            want.setdefault(officer, len(want))
        assert got.tolist() == [want[o] for o in ids]
    assert len(reg) == len(want) and [reg.id_of(c) for c in range(len(want))] == list(want)
    restored = OfficerRegistry.from_state(reg.export_state())
    assert restored.codes_of(list(want)).tolist() == list(range(len(want)))
