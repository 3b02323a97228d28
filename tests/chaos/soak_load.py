"""The soak's load: consecutive simulated policing days of the same officers, in delivery order."""

from __future__ import annotations

import datetime as dt
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIRST_DAY = dt.date(2024, 4, 8)  # clear of both clock changes, so every day is 24 hours
FIXES_PER_OFFICER_DAY = 1_600  # simulate_day's defaults (10-hour shift, a fix every 5-60 s) give 1,370-1,720
OFFICERS_PER_CALL = 50  # simulate_day builds every officer's 1 Hz true path at once: 50 keep a call near 1-2 s


@dataclass
class Load:
    """Fixes in the order they are offered, officers as codes into ``officer_ids``."""

    officer_ids: list[str]
    days: list[dt.date]
    day_first: np.ndarray  # index of each day's first fix
    officer: np.ndarray  # int32
    ts_ms: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def day_index_at(self, n_offered: int) -> int:
        """Index of the day of the last of the first ``n_offered`` fixes (-1 before the first)."""
        return int(np.searchsorted(self.day_first, n_offered, side="left")) - 1 if n_offered else -1


_POOL_INPUTS: dict = {}


def _load_pool_inputs(hotspots_path: str, schedule) -> None:
    from geo.hotspots import load_hotspots

    _POOL_INPUTS.update(hotspots=load_hotspots(hotspots_path), schedule=schedule)


def _simulate_day(job: tuple[dt.date, int, int]) -> tuple[np.ndarray, ...]:
    """One day of ``officers`` officers, ``OFFICERS_PER_CALL`` per simulate_day call (in a pool process)."""
    from stream.simulate import SimulationSettings, simulate_day

    day, officers, seed = job
    parts = []
    for first in range(0, officers, OFFICERS_PER_CALL):
        n = min(OFFICERS_PER_CALL, officers - first)
        sim = simulate_day(_POOL_INPUTS["hotspots"], _POOL_INPUTS["schedule"], day,
                           SimulationSettings(officers=n, seed=seed + first))
        code = first + np.fromiter((int(o[len("officer-"):]) for o in sim.officer_id), np.int32, len(sim))
        parts.append((code, sim.ts_ms, sim.lat, sim.lon, sim.accuracy_m))
    # Each call's fixes are in delivery order (late ones after their time); merge the calls by when each fix
    # is delivered, which is the latest event time delivered so far.
    delivered = np.concatenate([np.maximum.accumulate(p[1]) for p in parts])
    order = np.argsort(delivered, kind="stable")
    return tuple(np.concatenate([p[k] for p in parts])[order] for k in range(5))


def make_load(hotspots_path: Path, schedule, settings) -> Load:
    """Enough consecutive simulated days for a :class:`tests.chaos.soak.SoakSettings` run (two processes
    simulate them)."""
    from stream.producer import partition_of

    officer_ids = [f"officer-{k:04d}" for k in range(settings.officers)]
    covered = {partition_of(o.encode(), settings.partitions) for o in officer_ids}
    if len(covered) < settings.partitions:
        # A partition without fixes holds every day open (there is no idle rule yet).
        raise ValueError(f"{settings.officers} officers leave a partition of {settings.partitions} without fixes")
    total = int(settings.rate * settings.seconds)
    days: list[dt.date] = []
    parts: list[tuple[np.ndarray, ...]] = []
    with ProcessPoolExecutor(2, initializer=_load_pool_inputs, initargs=(str(hotspots_path), schedule)) as pool:
        while sum(len(p[1]) for p in parts) < total:
            more = math.ceil((total - sum(len(p[1]) for p in parts)) / (settings.officers * FIXES_PER_OFFICER_DAY))
            new = [FIRST_DAY + dt.timedelta(days=len(days) + k) for k in range(max(1, more))]
            jobs = [(d, settings.officers, settings.seed * 100_000 + (d - FIRST_DAY).days * 1_000) for d in new]
            parts += list(pool.map(_simulate_day, jobs))
            days += new
    sizes = np.array([len(p[1]) for p in parts])
    cols = [np.concatenate([p[k] for p in parts])[:total] for k in range(5)]
    return Load(officer_ids, days, np.concatenate([[0], np.cumsum(sizes)[:-1]]), *cols)
