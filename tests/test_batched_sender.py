"""BatchedSender: appends and flushes never wait for the producer; order and hand-over are kept."""

import asyncio

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from stream.batched_sender import BatchedSender


class SlowProducer:
    """Like aiokafka: ``send_batch`` waits while the partition's previous batch has not left yet;
    here a batch leaves when the test says so."""

    def __init__(self, batch_bytes: int = 1 << 16) -> None:
        self.batch_bytes = batch_bytes
        self.pending: dict[tuple[str, int], asyncio.Event] = {}
        self.sent: list[tuple[str, int, list[bytes]]] = []
        self.fail_next = False

    def create_batch(self):
        return BatchBuilder(self.batch_bytes, 0)

    async def send_batch(self, batch, topic, *, partition):
        tp = (topic, partition)
        while tp in self.pending:
            await self.pending[tp].wait()
        if self.fail_next:
            raise RuntimeError("broker gone")
        self.pending[tp] = asyncio.Event()
        self.sent.append((topic, partition, batch))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def leave(self, tp) -> None:
        self.pending.pop(tp).set()


def values_of(batch) -> list[bytes]:
    from aiokafka.record.default_records import DefaultRecordBatch

    return [r.value for r in DefaultRecordBatch(bytearray(batch._build()))]


def test_flush_never_waits_and_a_busy_partition_keeps_filling_its_batch():
    async def main():
        producer = SlowProducer()
        delivered = []
        sender = BatchedSender(producer, delivered.append)
        for i in range(3):
            sender.add("t", 0, None, b"a%d" % i, [])
        sender.flush()
        await asyncio.sleep(0)  # the hand-over task runs: the first batch goes at once
        assert len(producer.sent) == 1
        # The first batch has not left yet: flushing does not wait, and the records go on into one batch.
        for i in range(3, 5):
            sender.add("t", 0, None, b"a%d" % i, [])
        sender.flush()
        sender.add("t", 0, None, b"a5", [])
        sender.add("u", 1, None, b"b0", [])
        sender.flush()
        handed = sender.handed_over()
        await asyncio.sleep(0)
        assert not handed.done() and len(producer.sent) == 2  # ("u", 1) went; ("t", 0) waits
        producer.leave(("t", 0))
        await asyncio.wait_for(handed, 5)
        batches = [values_of(b) for topic, p, b in producer.sent if (topic, p) == ("t", 0)]
        assert batches == [[b"a0", b"a1", b"a2"], [b"a3", b"a4", b"a5"]]
        assert [values_of(b) for topic, p, b in producer.sent if topic == "u"] == [[b"b0"]]
        assert len(delivered) == len(producer.sent) == 3

    asyncio.run(main())


def test_handed_over_waits_for_what_was_added_before_it():
    async def main():
        producer = SlowProducer(batch_bytes=100)
        sender = BatchedSender(producer, lambda f: None)
        sender.add("t", 0, None, b"x", [])
        sender.flush()
        await asyncio.sleep(0)
        sender.add("t", 0, None, b"y", [])
        handed = sender.handed_over()  # covers "y", which waits behind "x"
        await asyncio.sleep(0)
        assert not handed.done()
        producer.leave(("t", 0))
        await asyncio.wait_for(handed, 5)
        assert [values_of(b) for _, _, b in producer.sent] == [[b"x"], [b"y"]]
        # Nothing left to wait for: done at once.
        await asyncio.wait_for(sender.handed_over(), 5)

    asyncio.run(main())


def test_full_batches_are_queued_without_a_flush():
    async def main():
        producer = SlowProducer(batch_bytes=200)
        sender = BatchedSender(producer, lambda f: None)
        for i in range(20):
            sender.add("t", 0, None, b"v" * 40, [])
        assert sender.backlog >= 3
        handed = sender.handed_over()
        while not handed.done():
            if ("t", 0) in producer.pending:
                producer.leave(("t", 0))
            await asyncio.sleep(0)
        assert sum(len(values_of(b)) for _, _, b in producer.sent) == 20

    asyncio.run(main())


def test_a_failed_hand_over_reaches_the_caller():
    async def main():
        producer = SlowProducer()
        sender = BatchedSender(producer, lambda f: None)
        producer.fail_next = True
        sender.add("t", 0, None, b"x", [])
        handed = sender.handed_over()
        with pytest.raises(RuntimeError, match="broker gone"):
            await asyncio.wait_for(handed, 5)
        with pytest.raises(RuntimeError, match="broker gone"):
            sender.flush()

    asyncio.run(main())
