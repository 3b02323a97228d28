"""The worker: two stages on aiokafka consumers of their own, metrics, hosted by a Faust app.

    location-fixes --stage 1 (per officer)--> dwell-intervals, patrol-events, visit-batches (internal)
    visit-batches --stage 2 (per hot spot-day)--> patrol-events
    bad records --> location-fixes-dead-letter (raw bytes + reason header)

Stage 1 (:mod:`stream.stage1_consumer`) checkpoints to ``officer-checkpoints``,
stage 2 (:mod:`stream.stage2_consumer`) to ``presence-checkpoints``. The
business logic lives in :mod:`stream.stage1` and :mod:`stream.stage2`
(pure), with their runtimes beside them. Faust runs the worker: its
services and timers, signals, and a crash that stops the whole worker.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from prometheus_client import CollectorRegistry

from geo.hotspots import HotspotSet, load_hotspots
from stream.board import TodayBoard
from stream.faust_app import DwellApp
from stream.kafka_security import aiokafka_security, ssl_context
from stream.metrics import DwellMetrics
from stream.policing_day import PolicingCalendar
from stream.producer import partition_of
from stream.schedule import load_schedule
from stream.settings import WorkerSettings
from stream.presence_runtime import PresenceRuntime
from stream.stage1_consumer import Stage1Consumer
from stream.stage2 import Applied, PresenceModel
from stream.stage2_consumer import Stage2Consumer

log = logging.getLogger(__name__)


def build_app(settings: WorkerSettings, hotspots: HotspotSet | None = None) -> DwellApp:
    """A worker app for these settings (topics get ``settings.topic_prefix``)."""
    hs = hotspots or load_hotspots(settings.hotspots, crs=settings.crs)
    tls = ssl_context(settings)  # one context for every client (None without TLS)
    app = DwellApp(settings.app_id, store="memory://", datadir=settings.state_dir, web_enabled=False)

    stage1 = Stage1Consumer(settings, hs, client_kwargs=aiokafka_security(settings, tls))
    runtime = stage1.runtime

    schedule = load_schedule(settings.schedule, hs.ids) if settings.schedule else None
    log.warning("%d hot spots from %s; schedule: %s", len(hs), settings.hotspots,
                f"{len(schedule)} hot spot-days from {settings.schedule}" if schedule else "none")
    model = PresenceModel(hs, schedule, PolicingCalendar(settings.rules.timezone, settings.rules.day_start),
                          settings.rules.min_patrol_s)
    owned_by = [[h for h in hs.ids if partition_of(h.encode(), settings.partitions) == q]
                for q in range(settings.partitions)]
    presence = PresenceRuntime(settings, model, owned_by)
    stage2 = Stage2Consumer(settings, presence, client_kwargs=aiokafka_security(settings, tls))
    # With simulated event time (time checks off) the wall clock says nothing
    # about which policing day is current.
    board = TodayBoard(model, wall_clock_days=settings.max_future_s is not None)
    app.metrics_registry = CollectorRegistry()

    def applied(out: Applied) -> None:
        if out.visits:
            ids, seconds = zip(*out.visits)
            metrics.visits_counted(ids, seconds, [d >= model.min_patrol_s for d in seconds])
        for day in out.days_seen:
            board.saw_day(day)
        for day, rows in out.closed:
            board.day_closed(day, rows)

    stage2.on_applied = applied

    def ready() -> bool:
        return stage1.ready and stage2.ready  # both groups have given this worker its partitions

    metrics = DwellMetrics(app.metrics_registry, hs, runtime=runtime, ingest=stage1, presence=presence, board=board,
                           ready=ready, every_hotspot_up_to=settings.metrics_every_hotspot_up_to)
    stage1.on_batch = metrics.batch_processed

    @app.timer(interval=settings.metrics_refresh_s)
    async def refresh_metrics() -> None:
        # Snapshots for scrapes, built here in the event loop (state is only
        # ever touched by the loop; scrapes run in the HTTP server's thread).
        try:
            present: dict[str, int] = {}
            newest = None
            for tracker in list(runtime.trackers.values()):
                hs_idx = tracker.open_visits().hotspot
                for h, c in zip(*np.unique(hs_idx, return_counts=True)):
                    present[hs.ids[int(h)]] = present.get(hs.ids[int(h)], 0) + int(c)
                if tracker.clock_ms is not None:  # the newest fix, or where the wall clock moved a quiet partition
                    newest = tracker.clock_ms if newest is None else max(newest, tracker.clock_ms)
            metrics.set_officers_present(present, newest)
            owned_q = stage2.partitions
            owned = [h for q in owned_q for h in owned_by[q]]
            board.refresh(owned, lambda day: presence.rows(day, owned_q), int(time.time() * 1000))
        except Exception:  # metrics must never stop the worker
            log.exception("metrics refresh failed")

    def run_stage(stage, name: str):
        async def run() -> None:
            try:
                await stage.run()
            except Exception as exc:  # the whole worker stops; its restart resumes from the checkpoints
                log.exception("%s failed", name)
                await app.crash(exc)

        return run

    app.add_stage(run_stage(stage1, "stage 1"), stage1.stop)
    app.add_stage(run_stage(stage2, "stage 2"), stage2.stop)
    app.early_tasks.append(metrics.watch_event_loop)

    @app.on_before_shutdown.connect
    def report(app_, **kwargs):
        st = runtime.stats
        log.warning("stage 1 processed %d batches, %d fixes (%d re-sent skipped), sent %d visits, %d patrols; "
                    "read %d records, %d dead letters", st.batches, st.fixes, st.skipped, st.visits,
                    st.patrols, stage1.stats.records, stage1.stats.dead_letters)
        st2 = presence.stats
        log.warning("stage 2 applied %d visit-batches (%d visits, %d re-sent skipped, %d late), sent %d events, "
                    "%d checkpoints", st2.batches, st2.visits, st2.skipped, st2.late_visits, st2.events,
                    st2.checkpoints)

    return app
