"""Fix columns, officer-id interning and value checks shared by replay and stream.

A batch of fixes is a handful of numpy columns; officer ids become dense int
codes once, at the edge, so the kernels never see a string.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import reasons

# Default plausibility bounds for replay: a fix outside them has a broken clock.
DEFAULT_TIME_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
DEFAULT_TIME_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_ID_CHARS = 64  # no radio or app id is longer; a longer one is malformed


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

    CSV rows arrive as 64-bit FNV-1a hashes of the id bytes (the scanner
    computes them in numba); JSON records arrive as ``str``. Both map to the
    same code. Two different ids with the same 64-bit hash are treated as one
    (probability about 3e-8 for a million officers).
    """

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._code_by_id: dict[str, int] = {}
        self._hashes = np.empty(0, np.uint64)  # sorted
        self._hash_codes = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def id_of(self, code: int) -> str:
        return self._ids[code]

    def ids_of(self, codes: np.ndarray) -> np.ndarray:
        """Officer id strings for an array of codes (object array)."""
        table = np.array(self._ids, dtype=object)
        return table[np.asarray(codes, dtype=np.int64)] if len(codes) else np.empty(0, dtype=object)

    def code_of(self, officer_id: str) -> int:
        code = self._code_by_id.get(officer_id)
        if code is None:
            code = len(self._ids)
            self._ids.append(officer_id)
            self._code_by_id[officer_id] = code
        return code

    def codes_of(self, officer_ids: list[str]) -> np.ndarray:
        return np.fromiter((self.code_of(o) for o in officer_ids), dtype=np.int64, count=len(officer_ids))

    def export_state(self) -> dict[str, np.ndarray]:
        # One UTF-8 blob and offsets: a fixed-width string array would pad
        # every id to the longest one.
        encoded = [o.encode("utf-8") for o in self._ids]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        if encoded:
            np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return {"officer_id_blob": np.frombuffer(b"".join(encoded), np.uint8), "officer_id_offsets": offsets,
                "officer_hashes": self._hashes, "officer_hash_codes": self._hash_codes}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> "OfficerRegistry":
        reg = cls()
        blob = arrays["officer_id_blob"].tobytes()
        offsets = arrays["officer_id_offsets"].tolist()
        for a, b in zip(offsets[:-1], offsets[1:]):
            reg.code_of(blob[a:b].decode("utf-8"))
        reg._hashes = np.array(arrays["officer_hashes"], dtype=np.uint64)
        reg._hash_codes = np.array(arrays["officer_hash_codes"], dtype=np.int64)
        return reg

    def codes_of_hashes(self, hashes: np.ndarray, buf: np.ndarray, start: np.ndarray, end: np.ndarray,
                        quoted: np.ndarray | None = None) -> np.ndarray:
        """Codes for hashed ids; ``buf[start[i]:end[i]]`` are the id bytes of row i.

        ``quoted`` marks CSV ids that were quoted (``""`` stands for ``"``).
        Rows whose id is not valid UTF-8 or longer than ``MAX_ID_CHARS`` get
        code -1: the caller rejects them.
        """
        uniq, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        pos = np.searchsorted(self._hashes, uniq)
        known = np.zeros(uniq.shape[0], bool)
        if self._hashes.shape[0]:
            known = self._hashes[np.minimum(pos, self._hashes.shape[0] - 1)] == uniq
        codes = np.empty(uniq.shape[0], np.int64)
        codes[known] = self._hash_codes[pos[known]]
        new = np.flatnonzero(~known)
        if new.size:
            added = []
            for j in new:
                r = first[j]
                try:
                    officer = buf[start[r]:end[r]].tobytes().decode("utf-8")
                except UnicodeDecodeError:
                    codes[j] = -1
                    continue
                if quoted is not None and quoted[r]:
                    officer = officer.replace('""', '"')
                if len(officer) > MAX_ID_CHARS:
                    codes[j] = -1
                    continue
                codes[j] = self.code_of(officer)
                added.append(j)
            added = np.asarray(added, dtype=np.int64)
            hashes_all = np.concatenate([self._hashes, uniq[added]])
            codes_all = np.concatenate([self._hash_codes, codes[added]])
            order = np.argsort(hashes_all, kind="stable")
            self._hashes, self._hash_codes = hashes_all[order], codes_all[order]
        return codes[inverse.reshape(-1)]


def check_values(ts_ms: np.ndarray, lat: np.ndarray, lon: np.ndarray, accuracy_m: np.ndarray, *,
                 time_min_ms: int, time_max_ms: int) -> np.ndarray:
    """Reason code per fix for values that parsed but cannot be right.

    Returns an int8 array, 0 where the fix is usable. Vectorised: one pass of
    numpy comparisons per rule, earliest rule wins.
    """
    status = np.zeros(ts_ms.shape[0], np.int8)

    def mark(mask: np.ndarray, code: int) -> None:
        status[(status == 0) & mask] = code

    finite = np.isfinite(lat) & np.isfinite(lon)
    mark(~finite, reasons.BAD_COORDINATES)
    with np.errstate(invalid="ignore"):
        mark((np.abs(lat) > 90.0) | (np.abs(lon) > 180.0), reasons.COORDINATES_OUT_OF_RANGE)
        mark((lat == 0.0) & (lon == 0.0), reasons.NULL_ISLAND)
        mark(~np.isnan(accuracy_m) & ~((accuracy_m >= 0.0) & np.isfinite(accuracy_m)), reasons.BAD_ACCURACY)
    mark((ts_ms < time_min_ms) | (ts_ms >= time_max_ms), reasons.TIME_OUT_OF_RANGE)
    return status
