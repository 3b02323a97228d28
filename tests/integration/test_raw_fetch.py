"""Fetched records as arrays (stream.raw_fetch) on the real broker, against aiokafka's own records."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import stream.raw_fetch
from stream.raw_fetch import RAW_CHUNKS, RawChunk, install

pytestmark = pytest.mark.integration


async def produce(bootstrap: str, topic: str) -> list[tuple]:
    """Plain batches, a gzip batch in the middle, null keys and values; returns (offset, key, value) sent."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    sent = []
    for compression in (None, "gzip", None):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, compression_type=compression)
        await producer.start()
        try:
            futures = []
            for i in range(300):
                n = len(sent) + len(futures)
                key = None if n % 7 == 0 else f"o{n}".encode()
                value = None if n % 11 == 0 and key is not None else f'{{"n":{n}}}'.encode()
                futures.append((key, value, await producer.send(topic, key=key, value=value, partition=0)))
            for key, value, f in futures:
                sent.append(((await f).offset, key, value))
        finally:
            await producer.stop()
    return sent


async def read(bootstrap: str, topic: str, start: int, n: int, raw: bool) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **({"value_deserializer": RAW_CHUNKS} if raw else {}))
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, start)
    got = []
    try:
        while sum(len(x) if isinstance(x, RawChunk) else 1 for x in got) < n:
            got.extend((await consumer.getmany(timeout_ms=2000)).get(tp, []))
    finally:
        await consumer.stop()
    return got


def test_chunks_hold_every_record_from_the_offset_asked_for_beside_plain_consumers(broker, namespace, monkeypatch):
    assert install()
    by_aiokafka = []  # records the kernel left to aiokafka (the gzip batch)
    original = stream.raw_fetch.chunk_of_records

    def counted(records):
        by_aiokafka.extend(records)
        return original(records)

    monkeypatch.setattr(stream.raw_fetch, "chunk_of_records", counted)
    topic = namespace["prefix"] + "raw"
    sent = asyncio.run(produce(broker.bootstrap, topic))
    start = 5  # inside the first batch: the fetch returns the whole batch, the chunk must not
    want = [(o, k, v) for o, k, v in sent if o >= start]
    chunks = asyncio.run(read(broker.bootstrap, topic, start, len(want), raw=True))
    assert chunks and all(isinstance(c, RawChunk) for c in chunks)
    got = [(int(c.offset[i]), c.key(i), c.value(i)) for c in chunks for i in range(len(c))]
    assert got == want
    # The gzip batch went through aiokafka's own decoding, and only it.
    assert [m.offset for m in by_aiokafka] == [o for o, _, _ in sent[300:600]]
    assert all(c.timestamp_ms.min() > 1_600_000_000_000 for c in chunks)
    # A consumer without the marker in the same process still gets aiokafka's records.
    plain = asyncio.run(read(broker.bootstrap, topic, start, len(want), raw=False))
    assert [(m.offset, m.key, m.value) for m in plain] == want
