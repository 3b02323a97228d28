"""Fix columns, officer-id interning and value checks shared by replay and stream.

A batch of fixes is a handful of numpy columns; officer ids become dense int
codes once, at the edge, so the kernels never see a string.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import id_table
from kernels.fix_values import check_fix_values
from kernels.textparse import hash_spans

# Default plausibility bounds for replay: a fix outside them has a broken clock.
DEFAULT_TIME_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
DEFAULT_TIME_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_ID_CHARS = 64  # no radio or app id is longer; a longer one is malformed
# A fix with every optional field is ~250 bytes; gateways add a few fields of their own. Anything much
# longer is not a fix (and is not decoded: a megabyte of JSON would stall the worker for nothing).
MAX_FIX_BYTES = 4096


@dataclass(frozen=True)
class FixColumns:
    """Fixes that parsed and passed the value checks, in arrival order.

    Attributes
    ----------
    row : int64 (n,)
        Where the fix came from: the 1-based file line in a replay, an offset
        id in the stream. Rejections are reported against it.
    officer : int64 (n,)
        Dense officer code from :class:`OfficerRegistry`.
    ts_ms : int64 (n,)
        Event time, epoch milliseconds UTC.
    lat, lon : float64 (n,)
        WGS84 degrees.
    accuracy_m : float64 (n,)
        Reported horizontal accuracy in metres, NaN when absent.
    """

    row: np.ndarray
    officer: np.ndarray
    ts_ms: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def take(self, index: np.ndarray) -> "FixColumns":
        return FixColumns(*(getattr(self, f)[index] for f in _FIELDS))

    @staticmethod
    def empty() -> "FixColumns":
        i8 = np.empty(0, np.int64)
        f8 = np.empty(0, np.float64)
        return FixColumns(i8, i8, i8, f8, f8, f8)


_FIELDS = ("row", "officer", "ts_ms", "lat", "lon", "accuracy_m")


@dataclass(frozen=True)
class Rejects:
    """Rows not used, with a ``kernels.reasons`` code each."""

    row: np.ndarray  # int64
    reason: np.ndarray  # int8

    def __len__(self) -> int:
        return int(self.row.shape[0])

    @staticmethod
    def empty() -> "Rejects":
        return Rejects(np.empty(0, np.int64), np.empty(0, np.int8))

    @staticmethod
    def concat(parts: list["Rejects"]) -> "Rejects":
        if not parts:
            return Rejects.empty()
        return Rejects(np.concatenate([p.row for p in parts]).astype(np.int64),
                       np.concatenate([p.reason for p in parts]).astype(np.int8))


class OfficerRegistry:
    """Dense int codes for officer ids, stable for the life of an engine.

    Ids arrive as 64-bit FNV-1a hashes of their bytes (the CSV and JSON
    scanners compute them in numba) or as ``str``; both map to the same code.
    The ids themselves are kept as one UTF-8 blob with offsets, and hashes map
    to codes through an open-addressing table (:mod:`kernels.id_table`):
    about 40 bytes an officer, where Python strings and a dict took 200. Two
    different ids with the same 64-bit hash are treated as one (probability
    about 3e-8 for a million officers).
    """

    def __init__(self) -> None:
        self._keys, self._codes = id_table.empty_table()
        self._n = 0
        self._blob = np.empty(1 << 12, np.uint8)
        self._offsets = np.zeros(1 << 10, np.int64)  # id i is blob[offsets[i]:offsets[i + 1]]
        self._hash_of = np.empty(1 << 10, np.uint64)  # per code, to rebuild the table

    def __len__(self) -> int:
        return self._n

    def nbytes(self) -> int:
        """Bytes of the arrays behind the registry (ids, offsets, hashes, table)."""
        return int(sum(a.nbytes for a in (self._keys, self._codes, self._blob, self._offsets, self._hash_of)))

    def id_of(self, code: int) -> str:
        return self._blob[self._offsets[code]:self._offsets[code + 1]].tobytes().decode("utf-8")

    def ids_of(self, codes: np.ndarray) -> np.ndarray:
        """Officer id strings for an array of codes (object array)."""
        codes = np.asarray(codes, dtype=np.int64)
        out = np.empty(codes.shape[0], dtype=object)
        if codes.shape[0]:
            blob = self._blob
            lo, hi = self._offsets[codes].tolist(), self._offsets[codes + 1].tolist()
            out[:] = [blob[a:b].tobytes().decode("utf-8") for a, b in zip(lo, hi)]
        return out

    def code_of(self, officer_id: str) -> int:
        return int(self.codes_of([officer_id])[0])

    def codes_of(self, officer_ids: list[str]) -> np.ndarray:
        encoded = [o.encode("utf-8") for o in officer_ids]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        if encoded:
            np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        buf = np.frombuffer(b"".join(encoded), np.uint8)
        return self.codes_of_hashes(hash_spans(buf, offsets), buf, offsets[:-1], offsets[1:])

    def export_state(self) -> dict[str, np.ndarray]:
        n = self._n
        return {"officer_id_blob": self._blob[:self._offsets[n]].copy(),
                "officer_id_offsets": self._offsets[:n + 1].copy(), "officer_hashes": self._hash_of[:n].copy()}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> "OfficerRegistry":
        reg = cls()
        offsets = np.array(arrays["officer_id_offsets"], dtype=np.int64)
        hashes = np.array(arrays["officer_hashes"], dtype=np.uint64)
        reg._append(np.array(arrays["officer_id_blob"], dtype=np.uint8), offsets, hashes)
        return reg

    def _append(self, blob: np.ndarray, offsets: np.ndarray, hashes: np.ndarray) -> None:
        """Add ids ``blob[offsets[i]:offsets[i + 1]]`` with their (new, distinct) hashes as the next codes."""
        k = hashes.shape[0]
        n, used = self._n, int(self._offsets[self._n])
        size = used + int(offsets[-1] - offsets[0])
        if size > self._blob.shape[0]:
            self._blob = np.concatenate([self._blob[:used], np.empty(max(size, 2 * self._blob.shape[0]) - used,
                                                                       np.uint8)])
        if n + k + 1 > self._offsets.shape[0]:
            grow = max(n + k + 1, 2 * self._offsets.shape[0])
            self._offsets = np.concatenate([self._offsets[:n + 1], np.zeros(grow - n - 1, np.int64)])
            self._hash_of = np.concatenate([self._hash_of[:n], np.empty(grow - n, np.uint64)])
        self._blob[used:size] = blob[offsets[0]:offsets[-1]]
        self._offsets[n + 1:n + k + 1] = used + (offsets[1:] - offsets[0])
        self._hash_of[n:n + k] = hashes
        self._keys, self._codes = id_table.insert(self._keys, self._codes, n, hashes, np.arange(n, n + k))
        self._n = n + k

    def codes_of_hashes(self, hashes: np.ndarray, buf: np.ndarray, start: np.ndarray, end: np.ndarray,
                        quoted: np.ndarray | None = None) -> np.ndarray:
        """Codes for hashed ids; ``buf[start[i]:end[i]]`` are the id bytes of row i.

        ``quoted`` marks CSV ids that were quoted (``""`` stands for ``"``).
        Rows whose id is not valid UTF-8 or longer than ``MAX_ID_CHARS`` get
        code -1: the caller rejects them.
        """
        codes = id_table.lookup(self._keys, self._codes, hashes)
        missing = np.flatnonzero(codes == id_table.EMPTY)
        if not missing.size:
            return codes
        # New officers (rare after the first minutes): checked one by one.
        new_hashes, first = np.unique(hashes[missing], return_index=True)
        order = np.argsort(first)  # codes in order of first appearance
        new_hashes, rows = new_hashes[order], missing[first[order]]
        keep, encoded = [], []
        for j, r in enumerate(rows.tolist()):
            raw = buf[start[r]:end[r]].tobytes()
            try:
                officer = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if quoted is not None and quoted[r]:
                officer = officer.replace('""', '"')
                raw = officer.encode("utf-8")
            if len(officer) > MAX_ID_CHARS:
                continue
            keep.append(j)
            encoded.append(raw)
        if keep:
            offsets = np.zeros(len(encoded) + 1, np.int64)
            np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
            self._append(np.frombuffer(b"".join(encoded), np.uint8), offsets, new_hashes[np.asarray(keep)])
        codes[missing] = id_table.lookup(self._keys, self._codes, hashes[missing])
        return codes


def check_values(ts_ms: np.ndarray, lat: np.ndarray, lon: np.ndarray, accuracy_m: np.ndarray, *,
                 time_min_ms: int, time_max_ms: int) -> np.ndarray:
    """Reason code per fix for values that parsed but cannot be right.

    Returns an int8 array, 0 where the fix is usable (one pass of
    :func:`kernels.fix_values.check_fix_values`, earliest rule wins).
    """
    status = np.zeros(np.shape(ts_ms)[0], np.int8)
    check_fix_values(ts_ms, lat, lon, accuracy_m, status, time_min_ms=time_min_ms, time_max_ms=time_max_ms)
    return status
