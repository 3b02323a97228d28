"""The worker's topics follow the input topic's partition count (issue 16, "Partition layout").

Without a broker: the plan from given partition counts, ensure_topics against
a fake admin client (races and refused creations), and run_worker building
its app with the count ensure_topics found. tests/integration/
test_partition_layout.py runs the same against the embedded broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace

import pytest

import geo
from stream.settings import INTERNAL_TOPICS, TOPICS, WorkerSettings
from stream.worker import WorkerStartError, ensure_topics, partition_counts, plan_topics

SETTINGS = WorkerSettings(brokers="fake:9092", topic_prefix="t.", app_id="app")
SOURCE = "t.location-fixes"
ALL = [SETTINGS.topic(t) for t in TOPICS]


def test_plan_follows_an_existing_input_topic():
    """Regression (issue 16): with location-fixes at 8 partitions, the worker created
    <app id>-officer-checkpoints with its default 4 and never completed a rebalance."""
    plan = plan_topics(SETTINGS, {SOURCE: 8})
    assert plan.partitions == 8
    assert plan.create == tuple(name for name in ALL if name != SOURCE)
    assert plan.warning is None


def test_plan_creates_a_missing_input_with_the_settings_count():
    plan = plan_topics(dataclasses.replace(SETTINGS, partitions=6), {})
    assert plan.partitions == 6 and plan.create == tuple(ALL)


def test_plan_warns_only_when_a_given_count_differs_from_the_input():
    warning = plan_topics(SETTINGS, {SOURCE: 8}, partitions_given=True).warning
    assert warning is not None and "--partitions 4 ignored" in warning and f"{SOURCE} exists with 8" in warning
    assert plan_topics(SETTINGS, {SOURCE: 8}, partitions_given=False).warning is None  # the default, not asked for
    assert plan_topics(SETTINGS, {SOURCE: 4}, partitions_given=True).warning is None
    assert plan_topics(SETTINGS, {}, partitions_given=True).warning is None  # the input is created with it


def test_plan_accepts_output_topics_with_any_count():
    counts = {SOURCE: 8, "t.dwell-intervals": 3, "t.patrol-events": 1, "t.location-fixes-dead-letter": 12}
    plan = plan_topics(SETTINGS, counts)
    assert plan.partitions == 8
    assert plan.create == tuple(SETTINGS.topic(t) for t in INTERNAL_TOPICS)


def test_plan_accepts_internal_topics_with_the_input_count():
    counts = {SOURCE: 8, **{SETTINGS.topic(t): 8 for t in INTERNAL_TOPICS}}
    assert plan_topics(SETTINGS, counts).create == ("t.dwell-intervals", "t.patrol-events",
                                                   "t.location-fixes-dead-letter")


@pytest.mark.parametrize("internal", INTERNAL_TOPICS)
def test_plan_refuses_an_internal_topic_with_another_count(internal):
    name = SETTINGS.topic(internal)
    with pytest.raises(WorkerStartError) as caught:
        plan_topics(SETTINGS, {SOURCE: 8, name: 4})
    message = str(caught.value)
    assert f"input topic {SOURCE} has 8 partitions" in message and f"internal topic {name} has 4" in message
    # What to do: delete every internal topic of the app (named), or another app id.
    assert all(SETTINGS.topic(t) in message for t in INTERNAL_TOPICS) and "--app-id" in message
    assert "\n" not in message


def test_plan_refuses_internal_topics_that_differ_from_a_missing_input_it_would_create():
    counts = {SETTINGS.topic(t): 8 for t in INTERNAL_TOPICS}
    with pytest.raises(WorkerStartError, match=rf"{SOURCE} does not exist and would be created with 4 partitions"):
        plan_topics(SETTINGS, counts)
    assert plan_topics(dataclasses.replace(SETTINGS, partitions=8), counts).create[0] == SOURCE


def test_plan_names_every_mismatched_internal_topic():
    counts = {SOURCE: 8, "t.app-visit-batches": 4, "t.app-presence-checkpoints": 2}
    with pytest.raises(WorkerStartError) as caught:
        plan_topics(SETTINGS, counts)
    assert "t.app-visit-batches has 4" in str(caught.value) and "t.app-presence-checkpoints has 2" in str(caught.value)


def test_internal_topics_of_another_app_id_do_not_count():
    counts = {SOURCE: 8, "t.other-visit-batches": 4}
    assert plan_topics(SETTINGS, counts).partitions == 8


def test_partition_counts_leaves_out_topics_with_errors_or_no_partitions():
    meta = [topic_meta("a", 3), topic_meta("b", 2, error_code=5), topic_meta("c", 0)]
    assert partition_counts(meta) == {"a": 3}


# ensure_topics against a fake admin client ------------------------------------------------------------


class FakeAdmin:
    """Topics in a dict; ``on_create`` can change the cluster first (another worker racing)."""

    topics: dict[str, int] = {}
    created: list[tuple[str, int, dict]] = []
    on_create = None
    refuse: dict[str, tuple[int, str]] = {}

    def __init__(self, **kwargs) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def describe_topics(self, topics=None):
        assert topics is None  # named topics would be auto-created by some brokers
        return [topic_meta(name, n) for name, n in self.topics.items()]

    async def create_topics(self, new_topics):
        if FakeAdmin.on_create:
            FakeAdmin.on_create(new_topics)
        errors = []
        for t in new_topics:
            if t.name in self.refuse:
                errors.append((t.name, *self.refuse[t.name]))
            elif t.name in self.topics:
                errors.append((t.name, 36, "Topic with this name already exists."))
            else:
                self.topics[t.name] = t.num_partitions
                self.created.append((t.name, t.num_partitions, dict(t.topic_configs)))
                errors.append((t.name, 0, None))
        return SimpleNamespace(topic_errors=errors)


@pytest.fixture
def admin(monkeypatch):
    import aiokafka.admin

    monkeypatch.setattr(FakeAdmin, "topics", {})
    monkeypatch.setattr(FakeAdmin, "created", [])
    monkeypatch.setattr(FakeAdmin, "on_create", None)
    monkeypatch.setattr(FakeAdmin, "refuse", {})
    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", FakeAdmin)
    return FakeAdmin


def test_ensure_topics_creates_everything_with_the_existing_input_count(admin):
    admin.topics[SOURCE] = 8
    assert asyncio.run(ensure_topics(SETTINGS)) == 8
    assert sorted(admin.topics) == sorted(ALL) and set(admin.topics.values()) == {8}
    compacted = {name for name, _, configs in admin.created if configs.get("cleanup.policy") == "compact"}
    assert compacted == {"t.app-officer-checkpoints", "t.app-presence-checkpoints"}


def test_ensure_topics_logs_a_warning_when_the_given_count_is_ignored(admin, caplog):
    admin.topics[SOURCE] = 8
    assert asyncio.run(ensure_topics(SETTINGS, partitions_given=True)) == 8
    assert any("--partitions 4 ignored" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_ensure_topics_creates_nothing_when_it_refuses(admin):
    admin.topics.update({SOURCE: 8, "t.app-visit-batches": 4})
    with pytest.raises(WorkerStartError, match="t.app-visit-batches has 4"):
        asyncio.run(ensure_topics(SETTINGS))
    assert admin.created == []


def test_ensure_topics_follows_an_input_created_by_someone_else_meanwhile(admin):
    """Between the worker's look and its create, a producer (or a worker with another
    --partitions) creates location-fixes with 8: the internal topics get 8, not 4."""

    def race(new_topics):
        admin.topics.setdefault(SOURCE, 8)

    admin.on_create = race
    assert asyncio.run(ensure_topics(SETTINGS)) == 8
    assert {name: n for name, n, _ in admin.created} == {name: 8 for name in ALL if name != SOURCE}


def test_ensure_topics_refuses_internal_topics_another_worker_created_meanwhile(admin):
    admin.topics[SOURCE] = 8

    def race(new_topics):
        admin.topics.setdefault("t.app-officer-checkpoints", 4)

    admin.on_create = race
    with pytest.raises(WorkerStartError, match="t.app-officer-checkpoints has 4"):
        asyncio.run(ensure_topics(SETTINGS))


def test_ensure_topics_reports_a_topic_the_broker_refuses(admin):
    admin.topics[SOURCE] = 8
    admin.refuse["t.patrol-events"] = (29, "Topic authorization failed.")
    with pytest.raises(WorkerStartError, match="t.patrol-events: Topic authorization failed"):
        asyncio.run(ensure_topics(SETTINGS))


# run_worker -------------------------------------------------------------------------------------------


class _Built(Exception):
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings


def test_run_worker_builds_the_app_with_the_input_count(monkeypatch):
    import stream.app
    import stream.worker

    seen = {}

    async def fake_ensure(settings, partitions_given=False):
        seen["given"] = partitions_given
        return 8

    def fake_build(settings, hotspots=None):
        raise _Built(settings)

    monkeypatch.setattr(stream.worker, "ensure_topics", fake_ensure)
    monkeypatch.setattr(stream.worker, "warm_up_kernels", lambda hotspots, rules: 0.0)
    monkeypatch.setattr(stream.app, "build_app", fake_build)
    settings = WorkerSettings(hotspots=str(geo.NOTTINGHAM_HOTSPOTS_PATH), partitions=4)
    with pytest.raises(_Built) as built:
        stream.worker.run_worker(settings, partitions_given=True)
    assert built.value.settings.partitions == 8 and seen["given"] is True
    assert built.value.settings == dataclasses.replace(settings, partitions=8)


@pytest.mark.parametrize("argv, env, given", [
    ([], {}, False),
    (["--partitions", "4"], {}, True),  # the default, but asked for
    ([], {"HOTSPOT_DWELL_PARTITIONS": "6"}, True),
])
def test_worker_command_tells_whether_partitions_was_given(monkeypatch, argv, env, given):
    import stream.worker
    from stream.cli import main

    monkeypatch.delenv("HOTSPOT_DWELL_PARTITIONS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    calls = []
    monkeypatch.setattr(stream.worker, "run_worker",
                        lambda settings, loglevel, partitions_given: calls.append(partitions_given) or 0)
    assert main(["worker", "--hotspots", str(geo.NOTTINGHAM_HOTSPOTS_PATH), *argv]) == 0
    assert calls == [given]


def test_worker_refusal_exits_with_the_message(monkeypatch):
    import stream.worker

    async def refuse(settings, partitions_given=False):
        raise WorkerStartError("partition counts differ: ...")

    monkeypatch.setattr(stream.worker, "ensure_topics", refuse)
    with pytest.raises(SystemExit) as stopped:
        stream.worker.run_worker(WorkerSettings(hotspots=str(geo.NOTTINGHAM_HOTSPOTS_PATH)))
    assert str(stopped.value.code) == "hotspot-dwell: error: partition counts differ: ..."


def topic_meta(name: str, n: int, error_code: int = 0) -> dict:
    """One topic as ``AIOKafkaAdminClient.describe_topics()`` gives it (aiokafka 0.14)."""
    return {"error_code": error_code, "topic": name, "is_internal": False,
            "partitions": [{"error_code": 0, "partition": p, "leader": 1, "replicas": [1], "isr": [1],
                            "offline_replicas": []} for p in range(n)]}
