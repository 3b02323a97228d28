"""Stage 2's own consumer: restore from the checkpoint, read on from the message after it, hand over on revoke."""

import asyncio
import logging
import time

import pytest

from aiokafka import TopicPartition

from stream.checkpoint_log import CheckpointStore, MemoryCheckpointLog
from stream.presence_runtime import PresenceRuntime
from stream.settings import WorkerSettings
from stream.visit_batches import VisitBatch
from stream.stage2_consumer import Stage2Consumer
from tests.test_stage2 import MIN, OWNED, T0, _vid, model_with_schedule

SETTINGS = WorkerSettings(partitions=1, checkpoint_interval_s=0.0)
TP = TopicPartition(SETTINGS.topic("visit-batches"), 0)
# One 4-minute visit a message to the hot spot scheduled from 14:00 (8 h after the day's start) for 15
# minutes: its dosage is met by the fourth. The source marks a checkpoint after each, so after the sixth
# message the first visits are older than its last two marks and only the offsets tell what a snapshot holds.
WINDOW = T0 + 8 * 60 * MIN
MESSAGES = [VisitBatch(0, [["v", _vid(k), OWNED[0], WINDOW + 4 * k * MIN, WINDOW + 4 * (k + 1) * MIN],
                           ["c", k]]).encode() for k in range(6)]


class FakeGroupConsumer:
    """What the stage-2 consumer asks of aiokafka's group consumer, recorded."""

    def __init__(self) -> None:
        self.seeks: list = []
        self.commits: list = []

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    async def seek_to_beginning(self, tp):
        self.seeks.append((tp, "beginning"))

    async def commit(self, offsets):
        self.commits.append(dict(offsets))


def worker(log: MemoryCheckpointLog, outcome: str = "delivered") -> Stage2Consumer:
    sent = []

    async def send(topic, key, value, partition, headers):
        sent.append((key, value))
        delivered = asyncio.get_running_loop().create_future()
        if outcome == "delivered":
            delivered.set_result(None)
        else:
            delivered.set_exception(ConnectionError("broker gone"))
        return delivered

    stage2 = Stage2Consumer(SETTINGS, PresenceRuntime(SETTINGS, model_with_schedule(), [OWNED], send))
    stage2.store = CheckpointStore(log)
    stage2.consumer = FakeGroupConsumer()
    stage2.sent = sent
    return stage2


def visits_in(stage2: Stage2Consumer) -> int:
    return sum(hd.visits for hd in stage2.runtime.states[0].days.values())


def test_a_revoked_partition_is_checkpointed_and_its_next_owner_reads_on_after_it():
    log = MemoryCheckpointLog()

    async def scenario():
        first = worker(log)
        await first.on_assigned([TP])
        assert first.consumer.seeks == [(TP, "beginning")]  # nothing checkpointed yet
        await first.process(0, [(k, MESSAGES[k]) for k in range(4)])
        await first.checkpoint(first.due_for_checkpoint(time.monotonic()))
        assert first.consumer.commits == [{TP: 4}]
        await first.process(0, [(4, MESSAGES[4])])
        await first.on_revoked([TP])
        assert first.partitions == [] and first.runtime.stats.checkpoints == 2

        second = worker(log)
        await second.on_assigned([TP])
        assert second.consumer.seeks == [(TP, 5)]  # the message after the last one the snapshot holds
        assert visits_in(second) == 5
        await second.process(0, [(5, MESSAGES[5])])
        assert visits_in(second) == 6 and second.runtime.stats.gaps == 0

    asyncio.run(scenario())


def test_after_a_crash_the_messages_since_the_checkpoint_are_read_again_and_counted_once():
    log = MemoryCheckpointLog()

    async def scenario():
        crashed = worker(log)
        await crashed.on_assigned([TP])
        await crashed.process(0, [(k, MESSAGES[k]) for k in range(3)])
        await crashed.checkpoint(crashed.due_for_checkpoint(time.monotonic()))
        await crashed.process(0, [(k, MESSAGES[k]) for k in range(3, 6)])  # then SIGKILL: no revoke

        restarted = worker(log)
        await restarted.on_assigned([TP])
        assert restarted.consumer.seeks == [(TP, 3)]
        # The group's committed offset may lag the checkpoint: a fetch from before it changes nothing.
        await restarted.process(0, [(k, MESSAGES[k]) for k in range(1, 6)])
        assert visits_in(restarted) == 6 and restarted.runtime.stats.reread == 2
        # The dosage event made again after the crash is the one made before it (same id, same body).
        assert len(crashed.sent) == 1 and restarted.sent == crashed.sent

    asyncio.run(scenario())


def test_no_checkpoint_is_written_once_an_event_it_covers_was_lost(caplog):
    log = MemoryCheckpointLog()

    async def scenario():
        stage2 = worker(log, outcome="failed")
        await stage2.on_assigned([TP])
        await stage2.process(0, [(k, MESSAGES[k]) for k in range(6)])
        assert stage2.sent  # the scheduled hot spot reached its dosage: an event went out, and was lost
        with pytest.raises(ConnectionError):
            await stage2.checkpoint(stage2.due_for_checkpoint(time.monotonic()))
        # The failed event's future is gone from the flush, but the failure is remembered: neither the
        # shutdown's nor a revoke's checkpoint goes out after it.
        with caplog.at_level(logging.ERROR):
            await stage2._checkpoint_safely(stage2.partitions, "shutdown")
            await stage2.on_revoked([TP])
        assert caplog.text.count("stage-2 checkpoint on") == 2
        assert await CheckpointStore(log).load(0) is None  # the next owner re-reads everything

    asyncio.run(scenario())


def test_a_message_this_engine_did_not_write_is_logged_and_read_past(caplog):
    async def scenario():
        stage2 = worker(MemoryCheckpointLog())
        await stage2.on_assigned([TP])
        with caplog.at_level(logging.ERROR):
            await stage2.process(0, [(0, b"{not json"), (1, MESSAGES[1]), (2, None)])
        assert stage2.runtime.stats.unreadable == 2 and visits_in(stage2) == 1
        assert stage2.runtime.states[0].applied_offset == 2
        assert "offset 0: unreadable" in caplog.text

    asyncio.run(scenario())


def test_a_partition_that_cannot_be_restored_stops_the_stage_instead_of_being_skipped():
    """aiokafka only logs a rebalance listener's exception: the partition would stay assigned with no
    state, its messages skipped for good. The listener keeps the error and the stage's loop raises it."""
    from stream.checkpoint_log import CheckpointError
    from stream.stage1_consumer import Rebalance

    class DamagedStore:
        async def load(self, partition):
            raise CheckpointError("checkpoint of partition 0 does not match its manifest")

    stage2 = worker(MemoryCheckpointLog())
    stage2.store = DamagedStore()
    listener = Rebalance(stage2)
    asyncio.run(listener.on_partitions_assigned([TP]))
    assert stage2.partitions == []

    class IdleGroupConsumer(FakeGroupConsumer):
        async def getmany(self, timeout_ms, max_records):
            return {}

        def assignment(self):
            return {TP}

    stage2.consumer = IdleGroupConsumer()
    stage2.rebalance = listener
    with pytest.raises(RuntimeError, match="rebalance") as raised:
        asyncio.run(stage2._loop())
    assert isinstance(raised.value.__cause__, CheckpointError)
