"""The Faust app: topics, the checkpoint table and the agents, wired from settings.

    location-fixes --ingest (aiokafka getmany, stateless)--> fix-batches
    fix-batches --track_dwell (stage 1, per officer)--> dwell-intervals, patrol-events
    bad records --> location-fixes-dead-letter (raw bytes + reason header)

Agents are thin: decode, call the runtime, ack. The business logic lives in
:mod:`stream.stage1` (pure) and :mod:`stream.dwell_runtime` (checkpoints, sends).
"""

from __future__ import annotations

import logging

from geo.hotspots import HotspotSet, load_hotspots
from stream.batches import BatchFormatError, FixBatch
from stream.dwell_runtime import DwellRuntime
from stream.faust_transport import DwellApp
from stream.ingest import Ingest
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)


def build_app(settings: WorkerSettings, hotspots: HotspotSet | None = None) -> DwellApp:
    """A worker app for these settings (topics get ``settings.topic_prefix``)."""
    hs = hotspots or load_hotspots(settings.hotspots, crs=settings.crs)
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.brokers.split(",") if b.strip())
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
        # Events past the last checkpoint are left unacked on purpose (the
        # next owner re-reads them); shutdown must not wait for their acks.
        stream_wait_empty=False,
        producer_linger=0.005,
        producer_max_request_size=4 << 20,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.dwell_settings = settings
    app.hotspots = hs

    def send(topic, key, value, partition, timestamp, headers):
        return app.producer.send(topic, key, value, partition, timestamp, headers)

    runtime = DwellRuntime(settings, hs, send)
    app.dwell_runtime = runtime

    fix_batches = app.topic(settings.topic("fix-batches"), partitions=settings.partitions, internal=True,
                            value_serializer="raw", key_serializer="raw")
    # One snapshot per partition, co-partitioned with fix-batches.
    checkpoints = app.Table("partition_to_checkpoint", default=None, partitions=settings.partitions,
                            key_type=bytes, value_type=bytes,
                            extra_topic_configs={"cleanup.policy": "compact"})
    for name in ("dwell-intervals", "patrol-events", "location-fixes-dead-letter"):
        app.topic(settings.topic(name), partitions=settings.partitions, internal=True)
    # location-fixes is created with the same partition count (see stream.worker).

    @app.agent(fix_batches, name="track_dwell")
    async def track_dwell(stream):
        manual = stream.noack()
        pending: dict[int, list] = {}
        async for event in manual.events():
            p = event.message.partition
            tracker = runtime.tracker(p, checkpoints)
            try:
                batch = FixBatch.decode(event.value)
            except BatchFormatError as exc:
                log.error("fix-batches partition %d offset %d: %s", p, event.message.offset, exc)
            else:
                await runtime.handle(tracker, batch)
                await runtime.close_day_if_due(tracker)
            pending.setdefault(p, []).append(event)
            if runtime.checkpoint_due(p):
                runtime.write_checkpoint(p, checkpoints)
                for done in pending.pop(p):
                    await manual.ack(done)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_, revoked, **kwargs):
        runtime.forget({tp.partition for tp in revoked if tp.topic == settings.topic("fix-batches")})

    ingest = Ingest(settings, send=send, flush=lambda: app.producer.flush())
    app.ingest = ingest

    @app.task
    async def run_ingest():
        await ingest.run()

    @app.on_before_shutdown.connect
    def stop_ingest(app_, **kwargs):
        ingest.stop()
        st = runtime.stats
        log.warning("stage 1 processed %d batches, %d fixes (%d re-sent skipped), sent %d visits, %d patrols; "
                    "ingest read %d records, %d dead letters", st.batches, st.fixes, st.skipped, st.visits,
                    st.patrols, ingest.stats.records, ingest.stats.dead_letters)

    return app
