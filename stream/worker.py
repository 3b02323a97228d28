"""Running a worker: warm the kernels, make sure the topics exist, start the app that hosts both stages."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stream.settings import COMPACTED_TOPICS, INTERNAL_TOPICS, TOPICS, WorkerSettings

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


# Topic creation: how long the new topics may take to show in the metadata.
TOPICS_VISIBLE_TIMEOUT_S = 10.0
TOPIC_ALREADY_EXISTS = 36  # Kafka error code: another worker created it first


class WorkerStartError(RuntimeError):
    """The worker cannot start: the reason is in the message."""


@dataclass(frozen=True)
class TopicPlan:
    """What :func:`ensure_topics` does: the partition count the worker runs with, and the topics to create."""

    partitions: int  # location-fixes' (existing, or as it will be created)
    create: tuple[str, ...]  # full names, each with ``partitions`` partitions
    warning: str | None = None


def plan_topics(settings: WorkerSettings, counts: Mapping[str, int], partitions_given: bool = False) -> TopicPlan:
    """The topics to create, given the partition counts of the topics that exist (by full name).

    The whole worker runs with the partition count of the input topic: stage 1's
    checkpoints are per input partition, stage 2 waits for a day mark from every
    input partition, and hot spots are spread over that many stage-2 partitions.
    So the internal topics must have it too (as Kafka Streams creates its changelog
    and repartition topics with the source topic's count and refuses to start on a
    co-partitioning mismatch); ``settings.partitions`` only sizes an input topic
    that does not exist yet. Output topics may have any count (stage 1 asks the
    brokers); missing ones get the input's.

    Raises
    ------
    WorkerStartError
        An existing internal topic's count differs from the input's.
    """
    source = settings.topic("location-fixes")
    n = counts.get(source, settings.partitions)
    warning = None
    if source in counts and partitions_given and settings.partitions != n:
        warning = (f"--partitions {settings.partitions} ignored: the input topic {source} exists with {n} "
                   f"partitions, and the worker's topics and partitioning follow it")
    wrong = [(settings.topic(t), counts[settings.topic(t)]) for t in INTERNAL_TOPICS
             if counts.get(settings.topic(t), n) != n]
    if wrong:
        raise WorkerStartError(_mismatch_message(settings, source, n, source in counts, wrong))
    return TopicPlan(n, tuple(settings.topic(t) for t in TOPICS if settings.topic(t) not in counts), warning)


def _mismatch_message(settings: WorkerSettings, source: str, n: int, source_exists: bool,
                      wrong: list[tuple[str, int]]) -> str:
    internal = ", ".join(settings.topic(t) for t in INTERNAL_TOPICS)
    differ = " and ".join(f"internal topic {name} has {count}" for name, count in wrong)
    if source_exists:
        source_text = f"the input topic {source} has {n} partitions"
        rebuild = f"rebuild their state from the fixes retained in {source}, with the same event ids"
    else:
        source_text = (f"the input topic {source} does not exist and would be created with {n} partitions "
                       f"(--partitions)")
        rebuild = "start afresh"
    return (f"partition counts differ: {source_text}, but {differ}. The internal topics of app id "
            f"{settings.app_id!r} must have the input's partition count, as the worker's state and stage 2's "
            f"inputs are partitioned like the input. Stop every worker of this app id and delete its internal "
            f"topics ({internal}); the workers then create them again and {rebuild}. Or start with a new "
            f"--app-id.")


def partition_counts(topics_metadata: list[dict]) -> dict[str, int]:
    """Partition counts by topic name from ``AIOKafkaAdminClient.describe_topics()`` (metadata of every topic).

    A topic whose metadata carries an error (one being created, say) is left out.
    """
    return {t["topic"]: len(t["partitions"]) for t in topics_metadata
            if t["error_code"] == 0 and t["partitions"]}


async def ensure_topics(settings: WorkerSettings, partitions_given: bool = False) -> int:
    """Create the worker's missing topics with the input topic's partition count; returns that count.

    ``partitions_given``: ``settings.partitions`` was set explicitly, so a
    different count on an existing input topic is worth a warning.

    Raises
    ------
    WorkerStartError
        Kafka cannot be reached, a topic cannot be created, or an existing
        internal topic's partition count differs from the input's.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaConnectionError

    from stream.kafka_security import aiokafka_security

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.brokers, **aiokafka_security(settings))
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        await admin.close()
        raise WorkerStartError(f"cannot reach Kafka at {settings.brokers} over {settings.security_protocol} "
                               f"({exc}); check --brokers and the TLS/SASL settings") from None
    try:
        plan = plan_topics(settings, await _partition_counts(admin), partitions_given)  # refuses a mismatch
        source = settings.topic("location-fixes")
        if source in plan.create:
            # The input first, then the others with the count it has: a producer or another
            # worker may create it at the same moment, with another count.
            await _create_topics(admin, settings, [source], plan.partitions)
            plan = plan_topics(settings, await _partition_counts(admin, [source]), partitions_given)
        if plan.create:
            await _create_topics(admin, settings, plan.create, plan.partitions)
            # Again, with the topics as they are now: refuses internal topics another
            # worker created at the same moment for another input count.
            plan = plan_topics(settings, await _partition_counts(admin, plan.create), partitions_given)
        if plan.warning:
            log.warning("%s", plan.warning)
        return plan.partitions
    finally:
        await admin.close()


async def _partition_counts(admin, expected: Sequence[str] = ()) -> dict[str, int]:
    """Partition counts of every topic, once the ``expected`` ones (just created) show in the metadata."""
    deadline = time.monotonic() + TOPICS_VISIBLE_TIMEOUT_S
    while True:
        # Metadata of every topic: asking for named ones would create them, with
        # the broker's default count, on brokers that auto-create topics.
        counts = partition_counts(await admin.describe_topics())
        missing = [name for name in expected if name not in counts]
        if not missing:
            return counts
        if time.monotonic() > deadline:
            raise WorkerStartError(f"topics created but not in the brokers' metadata after "
                                   f"{TOPICS_VISIBLE_TIMEOUT_S:.0f} s: {', '.join(missing)}")
        await asyncio.sleep(0.1)


async def _create_topics(admin, settings: WorkerSettings, names: Sequence[str], partitions: int) -> None:
    from aiokafka.admin import NewTopic

    compacted = {settings.topic(t) for t in COMPACTED_TOPICS}
    response = await admin.create_topics([
        NewTopic(name, partitions, 1, topic_configs={"cleanup.policy": "compact"} if name in compacted else {})
        for name in names])
    # aiokafka returns the brokers' per-topic errors rather than raising them.
    failed = [f"{name}: {message or f'error code {code}'}" for name, code, message, *_ in response.topic_errors
              if code not in (0, TOPIC_ALREADY_EXISTS)]  # already there: another worker won the race
    if failed:
        raise WorkerStartError(f"cannot create topics with {partitions} partitions ({'; '.join(failed)})")


def run_worker(settings: WorkerSettings, loglevel: str = "warning", partitions_given: bool = False) -> int:
    """Run a worker until it is stopped; ``partitions_given``: ``settings.partitions`` was set explicitly.

    The worker runs with the partition count of the input topic it finds (see
    :func:`plan_topics`), whatever ``settings.partitions`` says.
    """
    from stream.kafka_security import SecurityError, check_security

    try:
        check_security(settings)
    except SecurityError as exc:
        raise SystemExit(f"hotspot-dwell: error: {exc}") from None
    # Topics first: a worker that cannot run says so at once, not after loading
    # hot spots and compiling kernels (seconds on a cold numba cache).
    try:
        partitions = asyncio.run(ensure_topics(settings, partitions_given))
    except WorkerStartError as exc:
        raise SystemExit(f"hotspot-dwell: error: {exc}") from None
    settings = dataclasses.replace(settings, partitions=partitions)

    import faust

    from geo.hotspots import load_hotspots
    from stream.app import build_app

    hotspots = load_hotspots(settings.hotspots, crs=settings.crs)
    seconds = warm_up_kernels(hotspots, settings.rules)
    log.info("kernels ready in %.1f s; %d partitions", seconds, partitions)
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
