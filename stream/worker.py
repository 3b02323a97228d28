"""Running a worker: warm the kernels, make sure the topics exist, start the app that hosts both stages."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import numpy as np

from stream.settings import COMPACTED_TOPICS, TOPICS, WorkerSettings

log = logging.getLogger(__name__)


def warm_up_kernels(hotspots, rules) -> float:
    """Compile (or load from cache) every kernel before joining the group.

    A first compile can take seconds; done on the first batch it would block
    the event loop past the session timeout and trigger a rebalance.
    """
    from stream.engine import DwellEngine
    from stream.fixes import FixColumns

    started = time.perf_counter()
    engine = DwellEngine(hotspots, rules)
    lon, lat = hotspots.centroids_wgs84
    n = min(len(lon), 8)
    i8 = np.arange(n, dtype=np.int64)
    engine.step(FixColumns(i8, np.zeros(n, np.int64), 1_700_000_000_000 + i8 * 1000, lat[:n], lon[:n],
                           np.full(n, np.nan)))
    engine.finish()
    return time.perf_counter() - started


async def ensure_topics(settings: WorkerSettings) -> None:
    """Create the external topics with the worker's partition count, if missing."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

    from stream.kafka_security import aiokafka_security

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.brokers, **aiokafka_security(settings))
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        await admin.close()
        raise WorkerStartError(f"cannot reach Kafka at {settings.brokers} over {settings.security_protocol} "
                               f"({exc}); check --brokers and the TLS/SASL settings") from None
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in TOPICS if settings.topic(t) not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(settings.topic(t), settings.partitions, 1,
                             topic_configs={"cleanup.policy": "compact"} if t in COMPACTED_TOPICS else {})
                    for t in missing])
            except TopicAlreadyExistsError:
                pass  # another worker won the race
    finally:
        await admin.close()


class WorkerStartError(RuntimeError):
    """The worker cannot start: the reason is in the message."""


def run_worker(settings: WorkerSettings, loglevel: str = "warning") -> int:
    import faust

    from geo.hotspots import load_hotspots
    from stream.app import build_app

    from stream.kafka_security import SecurityError, check_security

    try:
        check_security(settings)
    except SecurityError as exc:
        raise SystemExit(f"hotspot-dwell: error: {exc}") from None
    hotspots = load_hotspots(settings.hotspots, crs=settings.crs)
    seconds = warm_up_kernels(hotspots, settings.rules)
    log.info("kernels ready in %.1f s", seconds)
    try:
        asyncio.run(ensure_topics(settings))
    except WorkerStartError as exc:
        raise SystemExit(f"hotspot-dwell: error: {exc}") from None
    app = build_app(settings, hotspots)
    if settings.metrics_port:
        from stream.metrics import serve

        serve(app.metrics_registry, settings.metrics_port, settings.metrics_host)
        log.warning("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG so that it can
    # spin on every record: every aiokafka debug call then builds a log record
    # (8% of a busy worker's time). No spinner, no DEBUG.
    worker.spinner = None
    # Everything loaded so far (hot spots, kernels, Faust) lives as long as the
    # process: keep it out of the collector's scans. A busy worker allocates
    # and frees hundreds of thousands of small objects a second (records,
    # events); collecting the young generation every 700 of them cost more
    # than the dwell rules.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    worker.execute_from_commandline()
    return 0
