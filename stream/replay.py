"""File replay: the engine core over exported fixes, with no broker.

``replay()`` is the notebook API; ``hotspot-dwell replay`` wraps it and writes
the tables and charts. Fixes are read in chunks and each chunk is one engine
step, so a 10-million-fix export stays a few arrays in memory.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geo.hotspots import HotspotSet, load_hotspots
from kernels.reasons import REASON_NAMES
from stream.engine import DwellEngine, RuleSettings, Visits
from stream.fixes import OfficerRegistry, Rejects
from stream.policing_day import PolicingCalendar
from stream.prefetch import prefetch
from stream.readers import DEFAULT_CHUNK_BYTES, ReadOptions, read_fixes
from stream.schedule import Schedule, load_schedule
from stream.tables import Table, compliance_table, hotspot_days_table, patrols_table, sorted_by_ids, visits_table

# Rows are numbered per file; the file's position goes in the high bits so a
# reject can be traced to its file and line.
_FILE_SHIFT = 40


@dataclass(frozen=True)
class ReplayStats:
    fixes_read: int
    fixes_rejected: int
    seconds: float
    peak_rss_bytes: int

    @property
    def fixes_per_s(self) -> float:
        return self.fixes_read / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class ReplayResult:
    """The tables a replay produces (the same as the CLI writes)."""

    visits: Table
    patrols: Table
    hotspot_days: Table
    compliance: Table
    rejected: Table
    stats: ReplayStats
    raw_visits: Visits = field(repr=False)  # row i is visits row i, hot spots and officers as codes


def _progress_bar(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc="replay", disable=not enabled, file=sys.stderr,
                mininterval=0.5)


def replay(fixes: Sequence[str | os.PathLike] | str | os.PathLike, hotspots: HotspotSet | str | os.PathLike,
           schedule: Schedule | str | os.PathLike | None = None, rules: RuleSettings = RuleSettings(), *,
           read_options: ReadOptions = ReadOptions(), progress: bool = False) -> ReplayResult:
    """Replay location-fix exports against hot spots and a schedule.

    Parameters
    ----------
    fixes : path or sequence of paths
        CSV or JSON Lines exports (``.gz`` allowed), read in the given order
        as one stream.
    hotspots : HotspotSet or path
        Hot spots, or a GeoJSON path (projected to EPSG:27700).
    schedule : Schedule or path, optional
        Scheduled hot spot-days; without one nothing is scheduled and the
        compliance table only reports presence.
    rules : RuleSettings
        Thresholds of the dwell rules.
    progress : bool
        Draw a progress bar on stderr.

    Returns
    -------
    ReplayResult
        visits, patrols, hotspot_days, compliance, rejected tables and stats.
    """
    started = time.perf_counter()
    paths = [Path(fixes)] if isinstance(fixes, (str, os.PathLike)) else [Path(p) for p in fixes]
    hs = hotspots if isinstance(hotspots, HotspotSet) else load_hotspots(hotspots)
    sched = schedule if isinstance(schedule, Schedule) or schedule is None else load_schedule(schedule, hs.ids)
    calendar = PolicingCalendar(rules.timezone, rules.day_start)
    registry = OfficerRegistry()
    engine = DwellEngine(hs, rules)
    visits: list[Visits] = []
    rejects: list[Rejects] = []
    n_read = 0
    bar = _progress_bar(sum(os.path.getsize(p) for p in paths if p.exists()), progress)
    for file_index, path in enumerate(paths):
        tag = np.int64(file_index) << _FILE_SHIFT
        chunks = read_fixes(path, registry, read_options, progress=bar.update if bar else None)
        for chunk, bad in prefetch(chunks):
            n_read += len(chunk) + len(bad)
            rejects.append(Rejects(bad.row + tag, bad.reason))
            step = engine.step(dataclasses.replace(chunk, row=chunk.row + tag))
            visits.append(step.visits)
            rejects.append(step.rejects)
    if bar:
        bar.close()
    last = engine.finish()
    visits.append(last.visits)
    rejects.append(last.rejects)
    # In the visits table's order, so raw_visits row i is visits row i.
    all_visits = sorted_by_ids(Visits.concat(visits), registry, hs)
    all_rejects = Rejects.concat(rejects)
    hd = hotspot_days_table(all_visits, hs, sched, calendar, rules.min_patrol_s)
    seconds = time.perf_counter() - started
    return ReplayResult(
        visits=visits_table(all_visits, registry, hs),
        patrols=patrols_table(all_visits, registry, hs, rules.min_patrol_s),
        hotspot_days=hd,
        compliance=compliance_table(hd, hs),
        rejected=_rejected_table(all_rejects, paths),
        stats=ReplayStats(n_read, len(all_rejects), seconds, peak_rss_bytes()),
        raw_visits=all_visits,
    )


def _rejected_table(rejects: Rejects, paths: list[Path]) -> Table:
    order = np.argsort(rejects.row, kind="stable")
    row = rejects.row[order]
    names = np.array([REASON_NAMES.get(i, "unknown") for i in range(256)], dtype=object)
    files = np.array([str(p) for p in paths], dtype=object)
    return Table({
        "line": row & ((np.int64(1) << _FILE_SHIFT) - 1),
        "reason": names[rejects.reason[order].astype(np.uint8)],
        "file": files[row >> _FILE_SHIFT] if row.size else np.empty(0, object),
    })


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_outputs(result: ReplayResult, out_dir: str | os.PathLike, *, charts: bool = True) -> list[Path]:
    """Write the CSV tables (and PNG charts) of a replay into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("visits", "patrols", "hotspot_days", "compliance", "rejected"):
        path = out / f"{name}.csv"
        getattr(result, name).write_csv(path)
        written.append(path)
    if charts:
        from stream.charts import draw_compliance_by_day, draw_presence_per_hotspot

        written.append(draw_compliance_by_day(result.compliance, out / "compliance_by_day.png"))
        written.append(draw_presence_per_hotspot(result.hotspot_days, out / "presence_per_hotspot.png"))
    return written


__all__ = ["replay", "write_outputs", "ReplayResult", "RuleSettings", "DEFAULT_CHUNK_BYTES"]
