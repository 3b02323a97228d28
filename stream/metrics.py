"""Prometheus metrics of a worker: one class on an injected registry.

Names: one namespace (``hotspot_dwell``), base units, ``_total`` on counters.
No officer or device id is ever a label. Per-hot-spot series describe the
hot spots whose stage-2 partitions this worker owns, rebuilt from a snapshot
on every scrape, so a hot spot that moved to another worker in a rebalance
has no series here any more and summing over workers is right. Officers
present come from stage 1 (per officer partition): each officer is counted
by the one worker that owns them, so that sum is right too.

Compliance is not exported as a ratio: a district's hot spots are spread over
workers, and ratios do not add up. Each worker exports scheduled and met hot
spot counts per district; the recording rules in deploy/prometheus divide the
sums.

Event hooks (:meth:`DwellMetrics.batch_processed`, :meth:`visit_counted`) are
called in the event loop; scrape-time values come from snapshots the worker
swaps in (:meth:`set_officers_present`, the board), never from live state.
"""

from __future__ import annotations

import asyncio

import platform
import time
from collections.abc import Iterable
from importlib import metadata

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from geo.hotspots import HotspotSet
from stream import raw_fetch
from stream.board import BoardSnapshot
from stream.dwell_runtime import DEAD_LETTERED_NAMES

NAMESPACE = "hotspot_dwell"
# Dwell durations: 1 minute to 2 hours, with the 15-minute patrol as an edge.
DWELL_BUCKETS_S = (60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200)
BATCH_FIX_BUCKETS = (1, 10, 100, 1_000, 5_000, 20_000, 50_000, 100_000)
BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOOP_LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOOP_LAG_PROBE_S = 0.05  # how often the event loop's lag is sampled
# A worker owning more hot spots than this exports per-hot-spot series only for those scheduled today or with
# activity today (visits, presence, officers there): with 100,000 grid cells every series of every cell would
# be over a million series a scrape, almost all zeros.
EVERY_HOTSPOT_UP_TO = 5_000


def package_version() -> str:
    try:
        return metadata.version("hotspot-dwell")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class DwellMetrics(Collector):
    """Every metric of a worker.

    Parameters
    ----------
    registry : CollectorRegistry
        Where the metrics live (one per worker; tests pass their own).
    hotspots : HotspotSet
        For names, districts and centres.
    runtime : stream.dwell_runtime.DwellRuntime, optional
        Stage 1 counters (read at scrape time).
    ingest : stream.stage1_consumer.Stage1Consumer, optional
        Ingest counters; with it, the fetch fast path gauge (read from :mod:`stream.raw_fetch`).
    board : stream.board.TodayBoard, optional
        Stage 2's current day.
    ready : callable, optional
        True once the worker has its partitions.
    """

    def __init__(self, registry: CollectorRegistry, hotspots: HotspotSet, *, runtime=None, ingest=None,
                 presence=None, board=None, ready=None, version: str | None = None,
                 every_hotspot_up_to: int = EVERY_HOTSPOT_UP_TO) -> None:
        self.hotspots = hotspots
        self.every_hotspot_up_to = every_hotspot_up_to
        self.runtime = runtime
        self.ingest = ingest
        self.presence = presence
        self.board = board
        self._ready = ready
        self.version = version or package_version()
        self._districts = np.array([g or "none" for g in hotspots.groups], dtype=object)
        lon, lat = hotspots.centroids_wgs84
        self._centre = {h: (f"{la:.6f}", f"{lo:.6f}") for h, la, lo in zip(hotspots.ids, lat, lon)}
        self._index = {h: i for i, h in enumerate(hotspots.ids)}
        self._officers_present: dict[str, int] = {}
        self._newest_event_ms: int | None = None
        n = NAMESPACE
        # Visit durations and patrols per district, counted a batch of visits at a time in numpy
        # (a busy worker counts tens of thousands a second) and exported by collect().
        self._district_names, district_of = np.unique(self._districts.astype(str), return_inverse=True)
        self._district_of = district_of.reshape(-1).astype(np.int64)
        self._dwell_bounds = np.asarray(DWELL_BUCKETS_S, np.float64)
        self._dwell_counts = np.zeros((len(self._district_names), len(DWELL_BUCKETS_S) + 1), np.int64)
        self._dwell_sum = np.zeros(len(self._district_names))
        self._patrols = np.zeros(len(self._district_names), np.int64)
        self.batch_fixes = Histogram(f"{n}_batch_fixes", "Fixes per fix-batch processed by stage 1",
                                     buckets=BATCH_FIX_BUCKETS, registry=registry)
        self.batch_duration = Histogram(f"{n}_batch_duration_seconds", "Stage 1 processing time of a fix-batch",
                                        buckets=BATCH_SECONDS_BUCKETS, registry=registry)
        self.fix_latency = Histogram(f"{n}_fix_latency_seconds", "From a batch's oldest fix reaching Kafka to "
                                     "its dwell updates being sent", buckets=LATENCY_BUCKETS_S, registry=registry)
        # Every stall of the worker's event loop delays every fix in flight by as much: the lag is what a
        # timer due every LOOP_LAG_PROBE_S is late by (a common health signal of event-loop services).
        self.loop_lag = Histogram(f"{n}_event_loop_lag_seconds", "How late a timer fires in the worker's event "
                                  "loop (time it was blocked)", buckets=LOOP_LAG_BUCKETS_S, registry=registry)
        registry.register(self)

    async def watch_event_loop(self) -> None:
        """Sample the event loop's lag until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LOOP_LAG_PROBE_S
            await asyncio.sleep(LOOP_LAG_PROBE_S)
            self.loop_lag.observe(max(0.0, loop.time() - due))

    # -- hooks, called in the event loop -----------------------------------------------

    def batch_processed(self, n_fixes: int, seconds: float, latency_s: float | None) -> None:
        self.batch_fixes.observe(n_fixes)
        self.batch_duration.observe(seconds)
        if latency_s is not None and latency_s >= 0:
            self.fix_latency.observe(latency_s)

    def visit_counted(self, hotspot_id: str, duration_s: float, is_patrol: bool) -> None:
        """A visit stage 2 counted for the first time (re-sent visits are not counted again)."""
        self.visits_counted([hotspot_id], [duration_s], [is_patrol])

    def visits_counted(self, hotspot_ids, durations_s, is_patrol) -> None:
        """Visits stage 2 counted for the first time, as parallel sequences."""
        if not len(hotspot_ids):
            return
        index = self._index
        d = self._district_of[np.fromiter((index[h] for h in hotspot_ids), np.int64, len(hotspot_ids))]
        seconds = np.asarray(durations_s, np.float64)
        # Prometheus buckets are "less than or equal": the first bound >= the value.
        np.add.at(self._dwell_counts, (d, np.searchsorted(self._dwell_bounds, seconds, side="left")), 1)
        np.add.at(self._dwell_sum, d, seconds)
        np.add.at(self._patrols, d, np.asarray(is_patrol, bool).astype(np.int64))

    def set_officers_present(self, counts: dict[str, int], newest_event_ms: int | None) -> None:
        """Open visits per hot spot id (stage 1) and the newest event time processed."""
        self._officers_present = dict(counts)
        self._newest_event_ms = newest_event_ms

    # -- scrape ----------------------------------------------------------------------------

    def collect(self) -> Iterable:
        n = NAMESPACE
        info = InfoMetricFamily(f"{n}_build", "Build of this worker")
        info.add_metric([], {"version": self.version, "python": platform.python_version()})
        yield info
        ready = GaugeMetricFamily(f"{n}_ready", "1 once the worker's consumers have their partitions")
        ready.add_metric([], 1.0 if self._ready is None or self._ready() else 0.0)
        yield ready
        yield from self._engine()
        yield from self._visits()
        # One snapshot and one choice of hot spots for the whole scrape (refreshes run in the event loop).
        snap = self.board.snapshot if self.board is not None else None
        exported = self._exported(snap) if snap is not None else None
        yield from self._present(snap, exported)
        if snap is not None:
            yield from self._board(snap, exported)

    def _engine(self) -> Iterable:
        n = NAMESPACE
        if self.ingest is not None:
            # Read where stage 1 installs it (stream.raw_fetch.install in its run()): 0 for the moment before
            # that, and for good if aiokafka's fetcher is not the one the hook knows (see the alert
            # HotspotDwellFetchSlowPath).
            yield GaugeMetricFamily(f"{n}_fetch_fast_path", "1 if stage 1 reads fetched location-fixes as arrays "
                                    "(stream.raw_fetch hooked into aiokafka's fetcher); 0 if records come one "
                                    "ConsumerRecord at a time (about half the throughput)",
                                    value=1.0 if raw_fetch.fast_path_engaged() else 0.0)
            st = self.ingest.stats
            yield CounterMetricFamily(f"{n}_ingest_records", "Records read from location-fixes", value=st.records)
            yield CounterMetricFamily(f"{n}_ingest_batches", "Partition chunks of location-fixes processed",
                                      value=st.batches)
            if st.first_fix_at is not None:
                yield GaugeMetricFamily(f"{n}_first_fix_timestamp_seconds", "When this worker processed its "
                                        "first chunk of fixes (wall clock)", value=st.first_fix_at)
        dead = CounterMetricFamily(f"{n}_dead_letters", "Records sent to the dead-letter topic, by reason",
                                   labels=["reason"])
        rejected = CounterMetricFamily(f"{n}_fixes_rejected", "Fixes not used, by reason (each is "
                                       "also dead-lettered)", labels=["reason"])
        by_reason: dict[str, int] = {}
        dead_by_reason: dict[str, int] = {}
        if self.ingest is not None:
            for reason, count in self.ingest.stats.dead_letter_reasons.items():
                by_reason[reason] = by_reason.get(reason, 0) + count
                dead_by_reason[reason] = dead_by_reason.get(reason, 0) + count
        if self.runtime is not None:
            for reason, count in (self.runtime.stats.rejected or {}).items():
                by_reason[reason] = by_reason.get(reason, 0) + count
                if reason in DEAD_LETTERED_NAMES:
                    dead_by_reason[reason] = dead_by_reason.get(reason, 0) + count
        for reason, count in sorted(by_reason.items()):
            rejected.add_metric([reason], count)
        for reason, count in sorted(dead_by_reason.items()):
            dead.add_metric([reason], count)
        yield rejected
        yield dead
        if self.presence is not None:
            yield from self._stage2()
        if self.runtime is None:
            return
        st = self.runtime.stats
        accepted = st.fixes - sum((st.rejected or {}).values())
        yield CounterMetricFamily(f"{n}_fixes_accepted", "Fixes used by the dwell rules (stage 1)",
                                  value=max(accepted, 0))
        yield CounterMetricFamily(f"{n}_batches", "Chunks with valid fixes processed by stage 1", value=st.batches)
        yield CounterMetricFamily(f"{n}_visits_sent", "Visits closed and sent by stage 1 (re-sends included)",
                                  value=st.visits)
        yield CounterMetricFamily(f"{n}_checkpoints", "Stage 1 checkpoints written", value=st.checkpoints)
        yield CounterMetricFamily(f"{n}_visits_closed_by_silence", "Visits closed because the partition's event "
                                  "time passed the officer's newest fix by max_gap_s (silence is not presence)",
                                  value=st.silence_closed)
        yield CounterMetricFamily(f"{n}_idle_advances", "Times the wall clock moved the event time of a quiet "
                                  "input partition on (idle_advance_s)", value=st.idle_advances)
        trackers = list(self.runtime.trackers.values())
        yield GaugeMetricFamily(f"{n}_officers", "Officers in the state of this worker's input partitions",
                                value=sum(len(t.registry) for t in trackers))
        yield GaugeMetricFamily(f"{n}_state_bytes", "Bytes of stage 1's officer state (ids, rules state, open "
                                "visits, reorder buffer)", value=sum(t.state_bytes() for t in trackers))
        if self._newest_event_ms is not None:
            lag = GaugeMetricFamily(f"{n}_event_time_lag_seconds", "Wall clock minus the newest event time "
                                    "stage 1 has processed")
            lag.add_metric([], time.time() - self._newest_event_ms / 1000.0)
            yield lag

    def _stage2(self) -> Iterable:
        n, st = NAMESPACE, self.presence.stats
        yield CounterMetricFamily(f"{n}_stage2_batches", "visit-batches messages applied by stage 2", value=st.batches)
        yield CounterMetricFamily(f"{n}_stage2_checkpoints", "Stage 2 checkpoints written", value=st.checkpoints)
        yield CounterMetricFamily(f"{n}_stage2_late_visits", "Visits that reached stage 2 after their day closed "
                                  "(not counted)", value=st.late_visits)
        yield CounterMetricFamily(f"{n}_stage2_gaps", "visit-batches offsets missing between a partition's restored "
                                  "state and what it read next (hot spot-days may lack visits)", value=st.gaps)
        yield CounterMetricFamily(f"{n}_stage2_unreadable", "visit-batches messages this engine did not write "
                                  "(skipped)", value=st.unreadable)

    def _visits(self) -> Iterable:
        n = NAMESPACE
        counts, sums, patrols = self._dwell_counts.copy(), self._dwell_sum.copy(), self._patrols.copy()
        dwell = HistogramMetricFamily(f"{n}_visit_duration_seconds", "Duration of closed visits, by district",
                                      labels=["district"])
        done = CounterMetricFamily(f"{n}_patrols_completed", "Patrols completed (visits of the patrol length or "
                                   "more), by district", labels=["district"])
        les = [floatToGoString(b) for b in self._dwell_bounds] + ["+Inf"]
        for k, district in enumerate(self._district_names.tolist()):
            if counts[k].sum() == 0:
                continue  # a district this worker has not counted a visit of
            dwell.add_metric([district], list(zip(les, np.cumsum(counts[k]).tolist())), sum_value=float(sums[k]))
            done.add_metric([district], int(patrols[k]))
        yield dwell
        yield done

    def _present(self, snap: BoardSnapshot | None, exported: np.ndarray | None) -> Iterable:
        present = GaugeMetricFamily(f"{NAMESPACE}_officers_present", "Officers in the hot spot now (open "
                                    "visits of this worker's officers)", labels=["hotspot_id"])
        # Zeros for the hot spots this worker owns in stage 2 (those it exports, see EVERY_HOTSPOT_UP_TO),
        # so every hot spot has a series somewhere; counts wherever its officers are.
        counts = dict.fromkeys(snap.hotspot_id[exported].tolist(), 0) if snap is not None else {}
        counts.update(self._officers_present)
        for h, c in sorted(counts.items()):
            present.add_metric([h], c)
        yield present

    def _exported(self, snap: BoardSnapshot) -> np.ndarray:
        """Which of the snapshot's hot spots get per-hot-spot series (all, unless there are very many)."""
        if len(snap) <= self.every_hotspot_up_to:
            return np.ones(len(snap), bool)
        present = np.isin(snap.hotspot_id, [h for h, c in self._officers_present.items() if c > 0])
        return snap.scheduled | (snap.visits > 0) | (snap.presence_s > 0) | present

    def _board(self, snap: BoardSnapshot, exported: np.ndarray) -> Iterable:
        n = NAMESPACE
        hotspot_info = InfoMetricFamily(f"{n}_hotspot", "Hot spots of this worker's stage-2 partitions: name, "
                                        "district and centre (for maps)")
        families = {
            "scheduled": GaugeMetricFamily(f"{n}_hotspot_scheduled", "1 if the hot spot is scheduled today",
                                           labels=["hotspot_id"]),
            "met": GaugeMetricFamily(f"{n}_hotspot_met", "1 once today's scheduled dosage is met",
                                     labels=["hotspot_id"]),
            "target": GaugeMetricFamily(f"{n}_hotspot_target_seconds", "Today's target presence in the window",
                                        labels=["hotspot_id"]),
            "win_start": GaugeMetricFamily(f"{n}_hotspot_window_start_timestamp_seconds", "Start of today's "
                                           "patrol window", labels=["hotspot_id"]),
            "win_end": GaugeMetricFamily(f"{n}_hotspot_window_end_timestamp_seconds", "End of today's patrol "
                                         "window", labels=["hotspot_id"]),
            "presence": GaugeMetricFamily(f"{n}_hotspot_presence_seconds", "Presence today (union of officers' "
                                          "visits: patrol-seconds)", labels=["hotspot_id"]),
            "win_presence": GaugeMetricFamily(f"{n}_hotspot_window_presence_seconds", "Presence today inside "
                                              "the patrol window", labels=["hotspot_id"]),
            "officer": GaugeMetricFamily(f"{n}_hotspot_officer_seconds", "Officer-seconds today (sum of "
                                         "visits)", labels=["hotspot_id"]),
            "visits": GaugeMetricFamily(f"{n}_hotspot_visits", "Visits today", labels=["hotspot_id"]),
            "patrols": GaugeMetricFamily(f"{n}_hotspot_patrols", "Patrols that started today",
                                         labels=["hotspot_id"]),
        }
        sched_n: dict[str, int] = {}
        met_n: dict[str, int] = {}
        for i, h in enumerate(snap.hotspot_id.tolist()):
            k = self._index.get(h)
            if k is None:
                continue
            district = self._districts[k]
            sched_n.setdefault(district, 0)
            met_n.setdefault(district, 0)
            if not exported[i]:
                continue
            lat, lon = self._centre[h]
            hotspot_info.add_metric([], {"hotspot_id": h, "name": self.hotspots.names[k] or h,
                                         "district": district, "lat": lat, "lon": lon})
            families["scheduled"].add_metric([h], float(snap.scheduled[i]))
            families["met"].add_metric([h], float(snap.met[i]))
            families["presence"].add_metric([h], float(snap.presence_s[i]))
            families["officer"].add_metric([h], float(snap.officer_s[i]))
            families["visits"].add_metric([h], int(snap.visits[i]))
            families["patrols"].add_metric([h], int(snap.patrols[i]))
            if snap.scheduled[i]:
                families["target"].add_metric([h], float(snap.target_s[i]))
                families["win_start"].add_metric([h], float(snap.window_start_s[i]))
                families["win_end"].add_metric([h], float(snap.window_end_s[i]))
                families["win_presence"].add_metric([h], float(snap.window_presence_s[i]))
                sched_n[district] += 1
                met_n[district] += int(snap.met[i])
        yield hotspot_info
        yield from families.values()
        scheduled = GaugeMetricFamily(f"{n}_scheduled_hotspots", "Hot spots scheduled today, by district",
                                      labels=["district"])
        met = GaugeMetricFamily(f"{n}_met_hotspots", "Scheduled hot spots whose dosage is met today, by district",
                                labels=["district"])
        for d in sorted(sched_n):
            scheduled.add_metric([d], sched_n[d])
            met.add_metric([d], met_n[d])
        yield scheduled
        yield met
        if snap.day is not None:
            day = GaugeMetricFamily(f"{n}_policing_day_start_timestamp_seconds", "Start of the policing day the "
                                    "hot spot series describe")
            day.add_metric([], snap.day_start_s)
            yield day
            end = GaugeMetricFamily(f"{n}_policing_day_end_timestamp_seconds", "End of that policing day (23 or "
                                    "25 hours after its start on clock-change days)")
            end.add_metric([], snap.day_end_s)
            yield end


def serve(metrics_registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` of ``metrics_registry`` on ``host:port`` (a thread of its own)."""
    start_http_server(port, addr=host, registry=metrics_registry)
