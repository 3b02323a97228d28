"""Fuzz what stage 1 runs on untrusted bytes, with atheris (libFuzzer's engine for Python).

    python -m tests.chaos.fuzz_decoder -runs=200000          # or -max_total_time=600, a corpus dir, ...

Four targets, chosen by the input's first byte:

0. the record-batch kernel on raw fetch bytes: it never raises, and what it
   returns is in bounds;
1. a real batch (aiokafka's builder) of fuzzed records, bytes after the CRC
   flipped and the CRC put right again, so the kernel gets past its checksum:
   whatever it decodes, aiokafka reads the same way;
2. fix values through the whole decode (numba scanner, msgspec, checks):
   every record is kept or rejected with a known reason, never an exception,
   and what is kept is a valid fix;
3. the repeated-key finder on lines that are JSON: it agrees with Python's
   ``json`` about a fix key given twice.

The numba kernels are not instrumented (they are machine code), so coverage
guides only the Python parts; the structured targets 1-3 are how the fuzzer
gets deep into the kernels anyway.
"""

from __future__ import annotations

import json
import struct
import sys

import atheris

with atheris.instrument_imports(include=["stream"]):
    from stream.batches import build_batch
    from stream.jsonfix import decode_records  # noqa: F401 (instrumented for coverage)

import numpy as np
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c

from kernels.jsonscan import _KEY_NAMES, first_repeated_key
from kernels.reasons import REASON_NAMES
from kernels.recordbatch import COMPLETE, CORRUPT, PARTIAL_TAIL, UNSUPPORTED, decode_record_batches
from stream.fixes import MAX_ID_CHARS

BOUNDS = dict(time_min_ms=1_500_000_000_000, time_max_ms=2_000_000_000_000)
FIX_KEYS = {k.decode() for k in _KEY_NAMES}


def _check_decoded(d, size: int) -> None:
    n = d.offset.shape[0]
    assert d.stopped_by in (COMPLETE, PARTIAL_TAIL, UNSUPPORTED, CORRUPT)
    assert 0 <= d.consumed_bytes <= size
    assert d.timestamp_ms.shape[0] == n and d.key_bounds.shape == (n, 2) and d.value_bounds.shape == (n, 2)
    for bounds, blob in ((d.key_bounds, d.key_blob), (d.value_bounds, d.value_blob)):
        present = bounds[:, 1] >= 0
        assert np.all(bounds[:, 0] >= 0) and np.all(bounds[present, 1] <= blob.shape[0])
        assert np.all(bounds[present, 0] <= bounds[present, 1])


def _raw_batches(fdp: atheris.FuzzedDataProvider) -> None:
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    _check_decoded(decode_record_batches(data), len(data))


def _mutated_batch(fdp: atheris.FuzzedDataProvider) -> None:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i in range(fdp.ConsumeIntInRange(1, 8)):
        key = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12)) if fdp.ConsumeBool() else None
        value = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60)) if fdp.ConsumeBool() else None
        b.append(i, timestamp=fdp.ConsumeIntInRange(0, 2**40), key=key, value=value, headers=[])
    raw = bytearray(b.build())
    for _ in range(fdp.ConsumeIntInRange(0, 6)):  # flips after the CRC field (byte 21 on)
        at = fdp.ConsumeIntInRange(21, len(raw) - 1)
        raw[at] = fdp.ConsumeIntInRange(0, 255)
    if fdp.ConsumeBool():  # the batch length too: a lying length over a right CRC
        raw[8:12] = struct.pack(">i", fdp.ConsumeIntInRange(-10, len(raw) + 10))
    raw[17:21] = struct.pack(">I", calc_crc32c(bytes(raw[21:])))
    data = bytes(raw) + fdp.ConsumeBytes(fdp.remaining_bytes())
    d = decode_record_batches(data)
    _check_decoded(d, len(data))
    if d.stopped_by != COMPLETE or d.consumed_bytes != len(raw):
        return
    try:
        records = MemoryRecords(bytes(raw))
        theirs = [(r.offset, r.timestamp, r.key, r.value) for r in records.next_batch()]
    except (CorruptRecordException, ValueError, struct.error, IndexError, TypeError):
        return  # aiokafka refuses what the kernel accepted: only headers differ (the kernel skips them)

    def part(bounds, blob, i):
        lo, hi = bounds[i]
        return None if hi < 0 else blob[lo:hi].tobytes()

    ours = [(int(d.offset[i]), int(d.timestamp_ms[i]), part(d.key_bounds, d.key_blob, i),
             part(d.value_bounds, d.value_blob, i)) for i in range(d.offset.shape[0])]
    assert ours == theirs, (ours, theirs)


def _fix_values(fdp: atheris.FuzzedDataProvider) -> None:
    values = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)) for _ in range(fdp.ConsumeIntInRange(1, 12))]
    batch, bad, reason = build_batch(1, list(range(len(values))), values, **BOUNDS)
    kept = set(batch.offset.tolist())
    assert kept.isdisjoint(bad.tolist()) and kept | set(bad.tolist()) == set(range(len(values)))
    assert all(int(r) in REASON_NAMES for r in reason)
    assert np.all(np.abs(batch.lat) <= 90) and np.all(np.abs(batch.lon) <= 180)
    assert np.all((batch.ts_ms >= BOUNDS["time_min_ms"]) & (batch.ts_ms <= BOUNDS["time_max_ms"]))
    for i in range(len(batch)):
        assert 0 < len(batch.officer_id_bytes(i).decode("utf-8")) <= 4 * MAX_ID_CHARS


def _repeated_keys(fdp: atheris.FuzzedDataProvider) -> None:
    lines = [fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 120)).replace("\n", " ")
             for _ in range(fdp.ConsumeIntInRange(1, 5))]
    repeats = []
    for i, line in enumerate(lines):
        try:
            pairs_of = []
            json.loads(line, object_pairs_hook=lambda pairs: pairs_of.append([k for k, _ in pairs]) or {})
        except (ValueError, RecursionError):
            return  # the finder is exact for JSON only
        if "\\u" in line:
            return  # a key spelt with escapes is left to the careful path
        if any(sum(1 for k in keys if k == name) > 1 for keys in pairs_of for name in FIX_KEYS):
            repeats.append(i)
    got = first_repeated_key(np.frombuffer("\n".join(lines).encode(), np.uint8))
    assert got == (repeats[0] if repeats else -1), (lines, got)


TARGETS = (_raw_batches, _mutated_batch, _fix_values, _repeated_keys)


def one_input(data: bytes) -> None:
    if not data:
        return
    TARGETS[data[0] % len(TARGETS)](atheris.FuzzedDataProvider(data[1:]))


def main(argv: list[str]) -> None:
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
