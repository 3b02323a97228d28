"""Read location-fix exports (CSV or JSON Lines, optionally gzipped) in chunks.

Each chunk becomes numpy columns (:class:`stream.fixes.FixColumns`) plus the
rows rejected while reading; memory stays bounded by the chunk size whatever
the file size, and no Python object is made per CSV row.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernels import reasons
from kernels.csvscan import scan_csv_chunk
from stream.fixes import (DEFAULT_TIME_MAX_MS, DEFAULT_TIME_MIN_MS, FixColumns, OfficerRegistry, Rejects,
                          check_values)
from stream.jsonfix import decode_records

REQUIRED_COLUMNS = ("officer_id", "ts", "lat", "lon")
DEFAULT_CHUNK_BYTES = 16 << 20

ProgressCallback = Callable[[int], None]  # called with bytes consumed since the last call


class FixFileError(ValueError):
    """The file as a whole cannot be read (no header, missing columns)."""


@dataclass(frozen=True)
class ReadOptions:
    time_min_ms: int = DEFAULT_TIME_MIN_MS
    time_max_ms: int = DEFAULT_TIME_MAX_MS
    chunk_bytes: int = DEFAULT_CHUNK_BYTES


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _base_suffix(path: Path) -> str:
    return Path(path.stem).suffix.lower() if path.suffix == ".gz" else path.suffix.lower()


def is_json_lines(path: Path) -> bool:
    return _base_suffix(path) in (".jsonl", ".ndjson", ".json")


class _TruncatedInput(Exception):
    """The compressed stream ended early or is corrupt after some good data."""


def _read(fh: io.BufferedIOBase, n: int, path) -> bytes:
    try:
        return fh.read(n)
    except gzip.BadGzipFile:
        raise FixFileError(f"{path}: not a gzip file (named .gz)") from None
    except (EOFError, zlib.error, OSError) as exc:
        raise _TruncatedInput(str(exc)) from None


def _chunks(fh: io.BufferedIOBase, chunk_bytes: int, path=None) -> Iterator[bytes | None]:
    """Blocks of whole lines (the last may lack a final newline).

    A cut-off compressed file yields its whole lines, then ``None`` (the
    partial last line is not used).
    """
    rest = b""
    while True:
        try:
            block = _read(fh, chunk_bytes, path)
        except _TruncatedInput:
            cut = rest.rfind(b"\n")
            if cut >= 0:
                yield rest[:cut + 1]
            yield None
            return
        if not block:
            if rest:
                yield rest
            return
        block = rest + block
        cut = block.rfind(b"\n")
        if cut < 0:
            rest = block
            continue
        rest = block[cut + 1:]
        yield block[:cut + 1]


def _finish(row: np.ndarray, officer: np.ndarray, ts_ms: np.ndarray, lat: np.ndarray, lon: np.ndarray,
            acc: np.ndarray, status: np.ndarray, opts: ReadOptions) -> tuple[FixColumns, Rejects]:
    ok = status == 0
    checked = check_values(ts_ms[ok], lat[ok], lon[ok], acc[ok], time_min_ms=opts.time_min_ms,
                           time_max_ms=opts.time_max_ms)
    status = status.copy()
    status[ok] = checked
    good = status == 0
    fixes = FixColumns(row[good], officer[good], ts_ms[good], lat[good], lon[good], acc[good])
    return fixes, Rejects(row[~good], status[~good])


def _parse_header(line: bytes, path: Path) -> tuple[bytes, list[str]]:
    try:
        text = line.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise FixFileError(f"{path}: line 1: header is not UTF-8 text (save the export as UTF-8 CSV)") from None
    delimiter = "\t" if text.count("\t") > text.count(",") else ","
    names = [h.strip().lower() for h in next(csv.reader([text], delimiter=delimiter))]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        found = ", ".join(n[:40] for n in names[:12]) + (", ..." if len(names) > 12 else "")
        raise FixFileError(f"{path}: line 1: header lacks required column(s) {', '.join(missing)} "
                           f"(found: {found or 'nothing'})")
    return delimiter.encode(), names


def read_csv(path: Path, registry: OfficerRegistry, opts: ReadOptions = ReadOptions(),
             progress: ProgressCallback | None = None) -> Iterator[tuple[FixColumns, Rejects]]:
    """Yield fix columns and rejects for each chunk of a CSV file."""
    with _open_binary(path) as fh:
        try:
            header = fh.readline(1 << 16)
        except gzip.BadGzipFile:
            raise FixFileError(f"{path}: not a gzip file (named .gz)") from None
        except (EOFError, zlib.error) as exc:
            raise FixFileError(f"{path}: compressed data is corrupt: {exc}") from None
        if not header.strip():
            raise FixFileError(f"{path}: line 1: empty file or empty header")
        delimiter, names = _parse_header(header, path)
        if progress:
            progress(len(header))
        cols = {c: names.index(c) for c in REQUIRED_COLUMNS}
        col_acc = names.index("accuracy_m") if "accuracy_m" in names else -1
        next_line = 2
        for block in _chunks(fh, opts.chunk_bytes, path):
            if block is None:
                yield FixColumns.empty(), _truncated_at(next_line)
                return
            buf = np.frombuffer(block, dtype=np.uint8)
            scanned = scan_csv_chunk(buf, first_line=next_line, delimiter=delimiter, n_header=len(names),
                                     col_officer=cols["officer_id"], col_ts=cols["ts"], col_lat=cols["lat"],
                                     col_lon=cols["lon"], col_accuracy=col_acc)
            next_line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            parsed = scanned.status == 0
            officer = np.full(scanned.line.shape[0], -1, np.int64)
            officer[parsed] = registry.codes_of_hashes(scanned.officer_hash[parsed], buf,
                                                       scanned.officer_start[parsed], scanned.officer_end[parsed],
                                                       scanned.officer_quoted[parsed])
            status = scanned.status
            if np.any(officer[parsed] < 0):  # an id that is not UTF-8
                status = status.copy()
                status[parsed & (officer < 0)] = reasons.MALFORMED
            yield _finish(scanned.line, officer, scanned.ts_ms, scanned.lat, scanned.lon, scanned.accuracy_m,
                          status, opts)
            if progress:
                progress(len(block))


def read_json_lines(path: Path, registry: OfficerRegistry, opts: ReadOptions = ReadOptions(),
                    progress: ProgressCallback | None = None) -> Iterator[tuple[FixColumns, Rejects]]:
    """Yield fix columns and rejects for each chunk of a JSON Lines file."""
    next_line = 1
    with _open_binary(path) as fh:
        for block in _chunks(fh, opts.chunk_bytes, path):
            if block is None:
                yield FixColumns.empty(), _truncated_at(next_line)
                return
            lines = block.split(b"\n")
            if block.endswith(b"\n"):
                lines.pop()
            numbers = np.arange(next_line, next_line + len(lines), dtype=np.int64)
            next_line += len(lines)
            keep = [i for i, ln in enumerate(lines) if ln.strip()]
            values = [lines[i] for i in keep]
            rows = numbers[keep] if keep else np.empty(0, np.int64)
            dec = decode_records(values)
            officer = np.full(len(values), -1, np.int64)
            ok = np.flatnonzero(dec.status == 0)
            officer[ok] = registry.codes_of([dec.officer_ids[i] for i in ok])
            yield _finish(rows, officer, dec.ts_ms, dec.lat, dec.lon, dec.accuracy_m, dec.status, opts)
            if progress:
                progress(len(block))


def _truncated_at(line: int) -> Rejects:
    return Rejects(np.array([line], np.int64), np.array([reasons.TRUNCATED_FILE], np.int8))


def read_fixes(path: str | os.PathLike, registry: OfficerRegistry, opts: ReadOptions = ReadOptions(),
               progress: ProgressCallback | None = None) -> Iterator[tuple[FixColumns, Rejects]]:
    """Read a fix export, CSV or JSON Lines by its name (``.csv``, ``.jsonl``, with optional ``.gz``)."""
    path = Path(path)
    if not path.exists():
        raise FixFileError(f"{path}: no such file")
    if is_json_lines(path):
        return read_json_lines(path, registry, opts, progress)
    return read_csv(path, registry, opts, progress)



__all__ = ["FixFileError", "ReadOptions", "read_fixes", "REQUIRED_COLUMNS", "reasons"]
