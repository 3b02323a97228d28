"""Prometheus metrics of a worker, read from the engine's own counters at scrape time.

One class on an injected registry. Names: one namespace (``hotspot_dwell``),
base units, ``_total`` on counters; no officer or device id is ever a label,
and only the hot spots of partitions this worker owns have series, so
summing over workers is right.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

NAMESPACE = "hotspot_dwell"


class DwellMetrics(Collector):
    """Collects from a :class:`stream.dwell_runtime.DwellRuntime` and an :class:`stream.ingest.Ingest`."""

    def __init__(self, runtime, ingest, registry: CollectorRegistry, version: str = "0.1.0", app=None) -> None:
        self.runtime = runtime
        self.ingest = ingest
        self.app = app
        self.version = version
        registry.register(self)

    def collect(self) -> Iterable:
        n = NAMESPACE
        info = InfoMetricFamily(f"{n}_build", "Build of this worker")
        info.add_metric([], {"version": self.version})
        yield info
        ready = GaugeMetricFamily(f"{n}_ready", "1 once the ingest and stage consumers have their partitions")
        ready.add_metric([], 1.0 if self._ready() else 0.0)
        yield ready
        st = self.runtime.stats
        yield CounterMetricFamily(f"{n}_ingest_records", "Records read from location-fixes",
                                  value=self.ingest.stats.records)
        yield CounterMetricFamily(f"{n}_dead_letters", "Records sent to the dead-letter topic by ingest",
                                  value=self.ingest.stats.dead_letters)
        yield CounterMetricFamily(f"{n}_batches", "fix-batches messages processed by stage 1", value=st.batches)
        yield CounterMetricFamily(f"{n}_fixes_processed", "Valid fixes processed by stage 1", value=st.fixes)
        rejected = CounterMetricFamily(f"{n}_fixes_rejected", "Fixes rejected by stage 1, by reason",
                                       labels=["reason"])
        for reason, count in sorted((st.rejected or {}).items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily(f"{n}_visits_closed", "Visits closed and sent", value=st.visits)
        yield CounterMetricFamily(f"{n}_patrols_completed", "Patrols completed and sent", value=st.patrols)
        present = GaugeMetricFamily(f"{n}_officers_present", "Officers in the hot spot now (open visits)",
                                    labels=["hotspot_id"])
        counts: dict[int, int] = {}
        for tracker in list(self.runtime.trackers.values()):
            hs = tracker.open_visits().hotspot
            for h, c in zip(*np.unique(hs, return_counts=True)):
                counts[int(h)] = counts.get(int(h), 0) + int(c)
        for h, c in sorted(counts.items()):
            present.add_metric([self.runtime.hotspots.ids[h]], c)
        yield present


    def _ready(self) -> bool:
        if not self.ingest.ready:
            return False
        if self.app is None:
            return True
        try:
            return bool(self.app.consumer.assignment()) and not self.app.rebalancing
        except Exception:  # the consumer is not built yet
            return False


def serve(runtime, ingest, port: int, host: str = "127.0.0.1", app=None) -> CollectorRegistry:
    """Serve ``/metrics`` on ``host:port`` from a registry of this worker's own."""
    registry = CollectorRegistry()
    DwellMetrics(runtime, ingest, registry, app=app)
    start_http_server(port, addr=host, registry=registry)
    return registry
