"""The stream's outputs read back and held against the replay, after de-duplication by event id.

Every event carries a deterministic id (the CloudEvents ``ce_id`` header), so a repeat after a crash
is recognised by it; a repeat must carry a body identical to the first, byte for byte, and any that
does not is counted as a difference. Dead letters have no id: they are de-duplicated by the input
record they came from (source partition and offset).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.events import event_type
from stream.producer import partition_of
from tests.chaos.campaign_load import CampaignDay, Expected
from tests.integration.test_streaming import DAY_COLUMNS, _plain_row

EVENT_TOPICS = ("dwell-intervals", "patrol-events")
DEAD_LETTER_TOPIC = "location-fixes-dead-letter"
EXAMPLES = 5  # of each kind of difference, kept in the report as evidence


@dataclass
class EventLog:
    """Events by type and id: the first body of each id, how many messages, and repeats that differ."""

    first: dict[str, dict[str, bytes]] = field(default_factory=lambda: defaultdict(dict))
    messages: Counter = field(default_factory=Counter)
    differing: dict[str, list[tuple[str, bytes, bytes]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, event_id: str, body: bytes) -> None:
        self.messages[kind] += 1
        seen = self.first[kind].setdefault(event_id, body)
        if seen != body:
            self.differing[kind].append((event_id, seen, body))

    def distinct(self, kind: str) -> int:
        return len(self.first.get(kind, {}))


class OutputWatch:
    """Reads the event topics from the start as they grow (no group: nothing is committed or moved)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.topics = [prefix + t for t in EVENT_TOPICS]
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                         max_partition_fetch_bytes=8 << 20)
        self.events = EventLog()
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer.topics()  # metadata of every topic, so the partitions are known
        for topic in self.topics:
            # The campaign creates the topics before any worker starts.
            self.partitions += [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic)
                                                                        or ())]
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def end_offsets(self) -> int:
        """Messages on the event topics now (the sum of their end offsets)."""
        return sum((await self.consumer.end_offsets(self.partitions)).values())

    async def poll(self, timeout_ms: int = 200) -> None:
        """Take in whatever has arrived."""
        for messages in (await self.consumer.getmany(timeout_ms=timeout_ms, max_records=100_000)).values():
            for m in messages:
                take_event(self.events, m)

    async def read_to_end(self, timeout_s: float = 120.0) -> EventLog:
        """Everything on the event topics up to their end offsets now."""
        ends = await self.consumer.end_offsets(self.partitions)
        deadline = time.monotonic() + timeout_s
        while not await _reached(self.consumer, ends):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read the outputs to their end offsets within {timeout_s:.0f} s")
            await self.poll(500)
        return self.events


async def true_end_offsets(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """One past the last offset of each partition, read from the records themselves.

    The embedded broker (Tansu 0.6) reports a partition's end offset as the first offset of its last
    record batch plus one, so a batch of several records at the end is counted as one; the fetch of
    that offset returns the whole batch.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        reported = await consumer.end_offsets(tps)
        ends = {}
        for tp in tps:
            ends[tp] = reported[tp]
            if reported[tp] == 0:
                continue
            consumer.assign([tp])
            consumer.seek(tp, reported[tp] - 1)
            messages = (await consumer.getmany(tp, timeout_ms=5000)).get(tp, [])
            ends[tp] = max([reported[tp]] + [m.offset + 1 for m in messages])
        return ends
    finally:
        await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def take_event(events: EventLog, message) -> None:
    headers = dict(message.headers or ())
    events.add(event_type(message.headers), headers["ce_id"].decode(), message.value)


async def read_dead_letters(bootstrap: str, prefix: str, timeout_s: float = 120.0) -> dict[tuple[int, int], list]:
    """(source partition, source offset) -> the reasons of every dead letter of that input record."""
    topic = prefix + DEAD_LETTER_TOPIC
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        by_source: dict[tuple[int, int], list] = defaultdict(list)
        deadline = time.monotonic() + timeout_s
        while not await _reached(consumer, ends):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read {topic} to its end within {timeout_s:.0f} s")
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    h = dict(m.headers)
                    by_source[(int(h["source_partition"]), int(h["source_offset"]))].append(h["reason"].decode())
        return by_source
    finally:
        await consumer.stop()


def _held_against(want: dict, got: dict) -> dict:
    """Lost (wanted, not there), extra (there, not wanted) and different (both, unequal), with examples."""
    lost = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    different = [k for k in want if k in got and want[k] != got[k]]
    return {"expected": len(want), "got": len(got), "lost": len(lost), "extra": len(extra),
            "different": len(different),
            "examples": {"lost": [repr(k) for k in lost[:EXAMPLES]], "extra": [repr(k) for k in extra[:EXAMPLES]],
                         "different": [f"{k!r}: replay {want[k]!r}, stream {got[k]!r}" for k in
                                       different[:EXAMPLES]]}}


def compare(expected: Expected, events: EventLog, dead_letters: dict[tuple[int, int], list], day: CampaignDay,
            partitions: int) -> dict:
    """The stream's distinct events against the replay; the figures of the report."""
    bodies = {kind: [json.loads(b) for b in by_id.values()] for kind, by_id in events.first.items()}
    visits = {(b["officer_id"], b["hotspot_id"], b["start"]): (b["end"], b["fixes"])
              for b in bodies.get("visit.closed", [])}
    patrols = {b["event_id"]: (b["officer_id"], b["hotspot_id"], b["start"], b["end"], b["duration_s"])
               for b in bodies.get("patrol.completed", [])}
    days = {(b["policing_day"], b["hotspot_id"]): _plain_row(tuple(b[c] for c in DAY_COLUMNS))
            for b in bodies.get("hotspot.day_closed", [])}
    met = {(b["policing_day"], b["hotspot_id"]): True for b in bodies.get("hotspot.dosage_met", [])}
    # Input positions of the records, as the producer sent them (one partition each, in order).
    line_of, next_offset = {}, [0] * partitions
    for line, (key, _) in enumerate(day.records, start=1):
        p = partition_of(key, partitions)
        line_of[(p, next_offset[p])] = line
        next_offset[p] += 1
    late = {line_of.get(source, -1): True for source, reasons in dead_letters.items() if "late" in reasons}
    kinds = sorted(events.messages)
    return {
        "messages": {k: events.messages[k] for k in kinds},
        "distinct_ids": {k: events.distinct(k) for k in kinds},
        "duplicates": {k: events.messages[k] - events.distinct(k) for k in kinds},
        "same_id_different_body": {k: len(events.differing.get(k, [])) for k in kinds},
        "same_id_different_body_examples": {k: [f"{i}: {a.decode()} / {b.decode()}" for i, a, b in v[:EXAMPLES]]
                                            for k, v in events.differing.items() if v},
        "dead_letter_duplicates": sum(len(r) - 1 for r in dead_letters.values()),
        "visits": _held_against(expected.visits, visits),
        "patrols": _held_against(expected.patrols, patrols),
        "hotspot_days": _held_against(expected.hotspot_days, days),
        "dosage_met": _held_against(dict.fromkeys(expected.met, True), met),
        "late_dead_letters": _held_against(dict.fromkeys(expected.late_lines, True), late),
    }


def differences(comparison: dict) -> int:
    """Everything lost, extra or different, and every repeated id whose body differs: 0 is a pass."""
    held = sum(comparison[k][n] for k in ("visits", "patrols", "hotspot_days", "dosage_met", "late_dead_letters")
               for n in ("lost", "extra", "different"))
    return held + sum(comparison["same_id_different_body"].values())
