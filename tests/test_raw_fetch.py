"""Chunks of fetched records (stream.raw_fetch) without a broker: built from bytes, from records, sliced;
the hook on the installed aiokafka, and the gauge that says whether it is in."""

import logging
import tomllib
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.consumer import fetcher as _fetcher
from aiokafka.structs import TopicPartition
from packaging.requirements import Requirement
from prometheus_client import CollectorRegistry

import geo
import stream.raw_fetch
from stream.metrics import DwellMetrics
from stream.raw_fetch import (RAW_CHUNKS, TESTED_AIOKAFKA, RawChunk, _ChunkingPartitionRecords, _decoded_chunk,
                              _KeptBytes, aiokafka_version, chunk_of_records, fast_path_engaged, incompatibility,
                              install)
from tests.test_metrics import FakeIngest
from tests.test_recordbatch import batch

Record = namedtuple("Record", "offset timestamp key value")


def contents(chunk):
    return [(int(chunk.offset[i]), int(chunk.timestamp_ms[i]), chunk.key(i), chunk.value(i)) for i in range(len(chunk))]


def test_a_chunk_from_bytes_starts_at_the_offset_asked_for():
    raw = batch([(10, b"a", b"x1", []), (11, None, b"x22", []), (12, b"c", None, []), (13, b"d", b"", [])],
                base_offset=100)
    chunk, consumed, next_offset = _decoded_chunk(raw, 102)
    assert contents(chunk) == [(102, 12, b"c", None), (103, 13, b"d", b"")]
    assert (consumed, next_offset) == (len(raw), 104)
    assert chunk.value_bounds.tolist() == [0, 0, 0]  # a null and an empty value hold no bytes


def test_a_chunk_from_records_keeps_nulls_apart_from_empties():
    records = [Record(5, 50, None, b"v"), Record(6, 60, b"k", None), Record(7, 70, b"", b"")]
    assert contents(chunk_of_records(records)) == [(5, 50, None, b"v"), (6, 60, b"k", None), (7, 70, b"", b"")]


def test_slices_cover_the_chunk_in_order_with_their_own_bounds():
    records = [Record(i, 1_000 + i, f"k{i}".encode(), (b"v" * (i % 5)) if i % 4 else None) for i in range(23)]
    chunk = chunk_of_records(records)
    pieces = list(chunk.slices(5))
    assert [len(p) for p in pieces] == [5, 5, 5, 5, 3]
    assert [row for p in pieces for row in contents(p)] == contents(chunk)
    assert all(p.value_bounds[0] == 0 and p.value_bounds[-1] == p.value_blob.shape[0] for p in pieces)
    assert list(chunk.slices(23)) == [chunk]


# -- the hook on the installed aiokafka, and the gauge that says whether it is in ----------------

def test_pyproject_pins_aiokafka_to_the_minor_the_hook_is_tested_against():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    [pin] = [Requirement(r) for r in pyproject["project"]["dependencies"] if Requirement(r).name == "aiokafka"]
    major, minor = map(int, TESTED_AIOKAFKA.split("."))
    assert aiokafka_version().startswith(f"{TESTED_AIOKAFKA}.")  # the hook's tests below ran on that minor
    assert pin.specifier.contains(aiokafka_version()) and pin.specifier.contains(f"{major}.{minor}.9")
    assert not pin.specifier.contains(f"{major}.{minor + 1}.0")  # the next minor may move the fetcher's internals
    assert not pin.specifier.contains(f"{major}.{minor - 1}.0")


def test_the_hook_engages_on_the_installed_aiokafka():
    # Fails when a new aiokafka changes what the hook reaches into: the stage-1 fast path would be lost.
    assert incompatibility(_fetcher) is None
    assert install() and fast_path_engaged()
    assert _fetcher.PartitionRecords is _ChunkingPartitionRecords and _fetcher.MemoryRecords is _KeptBytes
    # One fetch's bytes, built and passed as aiokafka's fetcher passes them (a gzip batch in the middle goes
    # through aiokafka's own decoding), starting inside the first batch.
    plain = batch([(10, b"o1", b"a", []), (11, None, b"bb", []), (12, b"o2", None, [])], base_offset=100)
    gzip = batch([(13, b"o3", b"c", [])], base_offset=103, compression=1)
    last = batch([(14, b"o4", b"d", [])], base_offset=104)
    tp = TopicPartition("location-fixes", 0)

    def fetched(value_deserializer):
        return _fetcher.PartitionRecords(tp, _fetcher.MemoryRecords(plain + gzip + last), None, 101, None,
                                         value_deserializer, True, _fetcher.READ_UNCOMMITTED)

    records = fetched(RAW_CHUNKS)
    chunks = list(records)
    assert all(isinstance(c, RawChunk) for c in chunks) and len(chunks) == 3
    want = [(101, 11, None, b"bb"), (102, 12, b"o2", None), (103, 13, b"o3", b"c"), (104, 14, b"o4", b"d")]
    assert [row for c in chunks for row in contents(c)] == want
    assert records.next_fetch_offset == 105
    # A consumer without the marker still gets aiokafka's own records.
    assert [(r.offset, r.timestamp, r.key, r.value) for r in fetched(None)] == want


@pytest.fixture(scope="module")
def hotspots():
    return geo.load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)


def test_the_fast_path_gauge_reads_1_with_the_hook_in(hotspots):
    assert install()
    registry = CollectorRegistry()
    DwellMetrics(registry, hotspots, ingest=FakeIngest())
    assert registry.get_sample_value("hotspot_dwell_fetch_fast_path") == 1.0
    # Without stage 1 in the worker there is no fetch of location-fixes to describe.
    alone = CollectorRegistry()
    DwellMetrics(alone, hotspots)
    assert alone.get_sample_value("hotspot_dwell_fetch_fast_path") is None


class _NewerPartitionRecords(_ChunkingPartitionRecords.__bases__[0]):
    """aiokafka's PartitionRecords as a later version might have it: one more constructor argument."""

    def __init__(self, tp, records, aborted_transactions, fetch_offset, key_deserializer, value_deserializer,
                 check_crcs, isolation_level, metrics):
        super().__init__(tp, records, aborted_transactions, fetch_offset, key_deserializer, value_deserializer,
                         check_crcs, isolation_level)


def test_an_aiokafka_the_hook_does_not_know_is_left_alone_with_a_warning_and_the_gauge_reads_0(
        hotspots, monkeypatch, caplog):
    # A process where install() has not run yet, and aiokafka's fetcher is not the one the hook knows.
    # monkeypatch puts aiokafka's fetcher names and stream.raw_fetch's state back after the test.
    monkeypatch.setattr(stream.raw_fetch, "_installed", False)
    monkeypatch.setattr(_fetcher, "PartitionRecords", _NewerPartitionRecords)
    monkeypatch.setattr(_fetcher, "MemoryRecords", _KeptBytes.__bases__[0])
    assert "metrics" in incompatibility(_fetcher)
    with caplog.at_level(logging.WARNING, logger="stream.raw_fetch"):
        assert not install()
    assert _fetcher.PartitionRecords is _NewerPartitionRecords  # aiokafka left alone
    assert not fast_path_engaged()
    [warning] = [r for r in caplog.records if r.name == "stream.raw_fetch"]
    assert warning.levelno == logging.WARNING
    assert aiokafka_version() in warning.getMessage() and "throughput" in warning.getMessage()
    registry = CollectorRegistry()
    DwellMetrics(registry, hotspots, ingest=FakeIngest())
    assert registry.get_sample_value("hotspot_dwell_fetch_fast_path") == 0.0


def test_a_fetcher_without_the_names_the_hook_replaces_is_incompatible():
    assert incompatibility(SimpleNamespace(PartitionRecords=_fetcher.PartitionRecords)) is not None
    no_unpack = type("PartitionRecords", (), {"__init__": _ChunkingPartitionRecords.__init__})
    assert "_unpack_records" in incompatibility(SimpleNamespace(PartitionRecords=no_unpack,
                                                                MemoryRecords=_fetcher.MemoryRecords))
