"""The worker: stage 1 on its own aiokafka consumer, stage 2 as a Faust agent, metrics.

    location-fixes --stage 1 (aiokafka getmany, per officer)--> dwell-intervals, patrol-events,
                                                                visit-batches (internal)
    visit-batches --track_presence (stage 2, per hot spot-day)--> patrol-events
    bad records --> location-fixes-dead-letter (raw bytes + reason header)

Stage 1 (:mod:`stream.stage1_consumer`) checkpoints to ``officer-checkpoints``;
stage 2 to a Faust table. The business logic lives in :mod:`stream.stage1`
and :mod:`stream.stage2` (pure), with their runtimes beside them.
"""

from __future__ import annotations

import logging
import time

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry

from geo.hotspots import HotspotSet, load_hotspots
from stream.board import TodayBoard
from stream.faust_transport import DwellApp
from stream.kafka_security import aiokafka_security, faust_credentials, ssl_context
from stream.metrics import DwellMetrics
from stream.policing_day import PolicingCalendar
from stream.producer import partition_of
from stream.schedule import load_schedule
from stream.settings import WorkerSettings
from stream.presence_runtime import PresenceRuntime
from stream.stage1_consumer import Stage1Consumer
from stream.stage2 import PresenceModel

log = logging.getLogger(__name__)


def build_app(settings: WorkerSettings, hotspots: HotspotSet | None = None) -> DwellApp:
    """A worker app for these settings (topics get ``settings.topic_prefix``)."""
    hs = hotspots or load_hotspots(settings.hotspots, crs=settings.crs)
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.brokers.split(",") if b.strip())
    tls = ssl_context(settings)  # one context for every client (None without TLS)
    app = DwellApp(
        settings.app_id,
        broker=brokers,
        store="memory://",
        datadir=settings.state_dir,
        topic_partitions=settings.partitions,
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # Joining a group on Tansu takes half the session timeout; heartbeats
        # run beside the agents, whose batches take milliseconds.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_commit_interval=0.5,
        table_standby_replicas=0,
        # An unexpected error stops the worker rather than restarting one
        # agent with half-advanced state: a restart recovers exactly from the
        # last checkpoint and committed offsets.
        agent_supervisor="mode.CrashingSupervisor",
        # Events past the last checkpoint are left unacked on purpose (the
        # next owner re-reads them); shutdown must not wait for their acks.
        stream_wait_empty=False,
        producer_linger=0.005,
        producer_max_request_size=4 << 20,
        broker_credentials=faust_credentials(settings, tls),
    )
    app.fetch_max_wait_ms = settings.stage2_fetch_max_wait_ms
    app.dwell_settings = settings
    app.hotspots = hs

    def send(topic, key, value, partition, timestamp, headers):
        return app.producer.send(topic, key, value, partition, timestamp, headers)

    stage1 = Stage1Consumer(settings, hs, client_kwargs=aiokafka_security(settings, tls))
    runtime = stage1.runtime
    app.dwell_runtime = runtime
    app.ingest = stage1

    for name in ("patrol-events", "location-fixes-dead-letter"):
        app.topic(settings.topic(name), partitions=settings.partitions, internal=True)
    app.topic(settings.topic("dwell-intervals"), partitions=settings.partitions, internal=True)
    # Stage 2 reads stage 1's visit-batches: one message per fix-batch and
    # stage-2 partition (visits of its hot spots and the day marks, in order),
    # not one per visit, so it never pays Faust's per-message cost per visit.
    visit_batches = app.topic(settings.topic("visit-batches"), partitions=settings.partitions, internal=True,
                              value_serializer="raw", key_serializer="raw")
    presence_checkpoints = app.Table("partition_to_presence", default=None, partitions=settings.partitions,
                                     key_type=bytes, value_type=bytes,
                                     extra_topic_configs={"cleanup.policy": "compact"})
    schedule = load_schedule(settings.schedule, hs.ids) if settings.schedule else None
    log.warning("%d hot spots from %s; schedule: %s", len(hs), settings.hotspots,
                f"{len(schedule)} hot spot-days from {settings.schedule}" if schedule else "none")
    model = PresenceModel(hs, schedule, PolicingCalendar(settings.rules.timezone, settings.rules.day_start),
                          settings.rules.min_patrol_s)
    owned_by = [[h for h in hs.ids if partition_of(h.encode(), settings.partitions) == q]
                for q in range(settings.partitions)]
    presence = PresenceRuntime(settings, model, send, owned_by)
    app.presence_runtime = presence
    # With simulated event time (time checks off) the wall clock says nothing
    # about which policing day is current.
    board = TodayBoard(model, wall_clock_days=settings.max_future_s is not None)
    app.board = board
    app.metrics_registry = CollectorRegistry()
    # location-fixes is created with the same partition count (see stream.worker).

    @app.agent(visit_batches, name="track_presence")
    async def track_presence(stream):
        manual = stream.noack()
        async for event in manual.events():
            q = event.message.partition
            state = presence.state(q, presence_checkpoints)
            try:
                applied = await presence.handle(state, event.value or b"", event.message.offset)
            except (ValueError, KeyError, TypeError, IndexError, msgspec.DecodeError) as exc:
                # A record this engine did not write: skipped, logged, never a crash.
                log.error("visit-batches partition %d offset %d: unreadable: %r", q, event.message.offset, exc)
            else:
                if applied.visits:
                    ids, seconds = zip(*applied.visits)
                    metrics.visits_counted(ids, seconds, [d >= model.min_patrol_s for d in seconds])
                for day in applied.days_seen:
                    board.saw_day(day)
                for day, rows in applied.closed:
                    board.day_closed(day, rows)
            if presence.states.get(q) is not state:
                continue  # revoked while we awaited
            await presence.settle(q, event, presence_checkpoints, manual.ack)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_, revoked, **kwargs):
        presence.forget({tp.partition for tp in revoked if tp.topic == settings.topic("visit-batches")})

    def ready() -> bool:
        if not stage1.ready:
            return False
        try:
            return bool(app.consumer.assignment()) and not app.rebalancing
        except Exception:  # the consumer is not built yet
            return False

    metrics = DwellMetrics(app.metrics_registry, hs, runtime=runtime, ingest=stage1, board=board, ready=ready,
                           every_hotspot_up_to=settings.metrics_every_hotspot_up_to)
    app.metrics = metrics
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
                if tracker.max_event_ms is not None:
                    newest = tracker.max_event_ms if newest is None else max(newest, tracker.max_event_ms)
            metrics.set_officers_present(present, newest)
            topic = settings.topic("visit-batches")
            owned_q = sorted({tp.partition for tp in app.consumer.assignment() if tp.topic == topic})
            owned = [h for q in owned_q for h in owned_by[q]]
            board.refresh(owned, lambda day: presence.rows(day, owned_q), int(time.time() * 1000))
        except Exception:  # metrics must never stop the worker
            log.exception("metrics refresh failed")

    async def run_stage1() -> None:
        try:
            await stage1.run()
        except Exception as exc:  # the whole worker stops; its restart resumes from the checkpoints
            log.exception("stage 1 failed")
            await app.crash(exc)

    app.early_tasks.append(run_stage1)
    app.early_tasks.append(metrics.watch_event_loop)

    @app.on_before_shutdown.connect
    def stop_stage1(app_, **kwargs):
        stage1.stop()
        st = runtime.stats
        log.warning("stage 1 processed %d batches, %d fixes (%d re-sent skipped), sent %d visits, %d patrols; "
                    "read %d records, %d dead letters", st.batches, st.fixes, st.skipped, st.visits,
                    st.patrols, stage1.stats.records, stage1.stats.dead_letters)

    return app
