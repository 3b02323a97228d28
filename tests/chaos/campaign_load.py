"""The crash campaign's input: a seeded simulated policing day, and what the replay makes of it.

The day is :func:`stream.simulate.simulate_day` over the 57 Nottingham hot spots with a drawn
schedule (drops, duplicates and late fixes included), simulated in squads of officers until it holds
the fixes asked for, because one call keeps every officer's noise-free path at a point a second.
Each squad is in its own delivery order; the squads are merged on each one's running maximum of
event time, which keeps every squad's (so every officer's) order. One record per partition a day
later follows, so that every partition's event time passes the day's close, as the next shift's
fixes would.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import geo
from geo.hotspots import load_hotspots
from stream.producer import clock_keys, fix_json
from stream.replay import replay
from stream.schedule import draw_schedule
from stream.simulate import SimulationSettings, simulate_day
from tests.integration.test_streaming import DAY_COLUMNS, _plain_row

HOTSPOTS = Path(geo.NOTTINGHAM_HOTSPOTS_PATH)
DAY = dt.date(2024, 3, 30)
OFFICERS_PER_SQUAD = 50  # about 65,000 fixes and 2 s a call


@dataclass(frozen=True)
class CampaignDay:
    """The records to produce, in order, and where the hot spots and schedule are."""

    records: list[tuple[bytes, bytes]]  # (officer id, fix JSON): the fixes, then the closing clock records
    fixes: int  # records that are fixes of the day (the rest are clock records)
    officers: int
    hotspots_path: Path
    schedule_path: Path


@dataclass(frozen=True)
class Expected:
    """The replay's results, keyed as the stream's events are compared with them."""

    visits: dict[tuple[str, str, str], tuple]  # (officer, hot spot, start) -> (end, fixes)
    patrols: dict[str, tuple]  # patrol event id -> (officer, hot spot, start, end, duration s)
    hotspot_days: dict[tuple[str, str], tuple]  # (policing day, hot spot) -> the evaluation row
    met: set[tuple[str, str]]  # (policing day, hot spot) of met scheduled hot spot-days
    late_lines: set[int]  # 1-based positions in the records of fixes rejected as late


def simulate_campaign_day(min_fixes: int, partitions: int, seed: int, workdir: Path) -> CampaignDay:
    """At least ``min_fixes`` fixes of one simulated policing day, in delivery order."""
    hs = load_hotspots(HOTSPOTS)
    schedule = draw_schedule(hs.ids, first_day=DAY, days=1, seed=seed)
    schedule_path = workdir / "schedule.csv"
    schedule.write_csv(schedule_path)
    squads, merge_keys, n = [], [], 0
    while n < min_fixes:
        squad = len(squads)
        sim = simulate_day(hs, schedule, DAY, SimulationSettings(officers=OFFICERS_PER_SQUAD,
                                                                 seed=seed * 1000 + squad))
        ids = [f"s{squad:02d}-{o}" for o in sim.officer_id.tolist()]
        squads.append([(o.encode(), fix_json(o, t, la, lo, a)) for o, t, la, lo, a in
                       zip(ids, sim.ts_ms.tolist(), sim.lat.tolist(), sim.lon.tolist(), sim.accuracy_m.tolist())])
        # A late fix's event time lies behind its squad's running maximum: the maximum stands in for
        # the delivery time and never decreases, so a stable sort on it keeps each squad's order.
        merge_keys.append(np.maximum.accumulate(sim.ts_ms))
        n += len(sim)
    order = np.argsort(np.concatenate(merge_keys), kind="stable")
    flat = [r for squad in squads for r in squad]
    records = [flat[i] for i in order.tolist()]
    later = int(max(int(k[-1]) for k in merge_keys)) + 86_400_000
    closing = [(k, fix_json(k.decode(), later, 52.0, -1.0)) for k in clock_keys(partitions)]
    return CampaignDay(records + closing, n, len(squads) * OFFICERS_PER_SQUAD, HOTSPOTS, schedule_path)


def replay_campaign_day(day: CampaignDay, workdir: Path) -> Expected:
    """The replay of the same records, as JSON Lines in production order."""
    path = workdir / "day.jsonl"
    path.write_bytes(b"".join(v + b"\n" for _, v in day.records))
    result = replay(path, day.hotspots_path, day.schedule_path)
    v = result.visits.columns
    visits = {(o, h, s): (e, f) for o, h, s, e, f in zip(v["officer_id"].tolist(), v["hotspot_id"].tolist(),
                                                         v["start"].tolist(), v["end"].tolist(),
                                                         v["fixes"].tolist())}
    patrols = {row[0]: tuple(row[1:]) for row in result.patrols.rows()}
    columns = list(result.hotspot_days.columns)
    at = [columns.index(c) for c in DAY_COLUMNS]
    days = [_plain_row(tuple(row[i] for i in at)) for row in result.hotspot_days.rows()]
    rejected = result.rejected.columns
    late = {int(line) for line, reason in zip(rejected["line"].tolist(), rejected["reason"].tolist())
            if reason == "late"}
    return Expected(visits, patrols, {(r[0], r[1]): r for r in days}, {(r[0], r[1]) for r in days if r[8]}, late)
