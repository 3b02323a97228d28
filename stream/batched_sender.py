"""Records to known partitions, appended into aiokafka batches and sent a batch at a time.

``AIOKafkaProducer.send`` costs several microseconds a record (a future, the
partitioner's pure-Python murmur2 when there is a key, the accumulator);
stage 1 sends about one event per four fixes, so that alone would cap a
worker well below the consumer's rate. Here each record is one append to a
C-built record batch of its (topic, partition), and a batch is handed to the
producer when it is full or when :meth:`BatchedSender.flush` is called (once
per chunk of fixes). Order within a partition is kept.
"""

from __future__ import annotations


class BatchedSender:
    """Per-(topic, partition) record batches on an aiokafka producer."""

    def __init__(self, producer) -> None:
        self.producer = producer
        self._open: dict[tuple[str, int], object] = {}
        self.records = 0
        self.batches = 0

    async def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers) -> list:
        """Append a record; returns the delivery futures of batches that filled up (usually none)."""
        sent = []
        batch = self._open.get((topic, partition))
        if batch is None:
            batch = self._open[(topic, partition)] = self.producer.create_batch()
        if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
            sent.append(await self._send(topic, partition, batch))
            batch = self._open[(topic, partition)] = self.producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                raise ValueError(f"a record for {topic} of {len(value or b'')} bytes does not fit in an empty batch")
        self.records += 1
        return sent

    async def flush(self) -> list:
        """Hand every open batch to the producer; returns their delivery futures."""
        batches, self._open = self._open, {}
        return [await self._send(topic, partition, batch) for (topic, partition), batch in batches.items()]

    async def _send(self, topic: str, partition: int, batch) -> object:
        self.batches += 1
        return await self.producer.send_batch(batch, topic, partition=partition)
