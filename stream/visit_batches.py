"""The ``visit-batches`` wire format: what stage 1 sends stage 2.

Per chunk of fixes stage 1 processed and per stage-2 partition, one message
(or several under the broker's size limit): the visits it closed for that
partition's hot spots and its policing-day marks, in order, tagged with the
source partition. Stage 1 (:mod:`stream.dwell_runtime`) writes it, stage 2
(:mod:`stream.stage2`) reads it; no Kafka here.
"""

from __future__ import annotations

import datetime as dt

import msgspec


class VisitBatch(msgspec.Struct, array_like=True):
    """What stage 1 sends a stage-2 partition for one chunk of fixes.

    ``items`` in order: ``["v", visit_id, hotspot_id, start_ms, end_ms]`` for a
    closed visit, ``["m", policing_day, had_visits]`` for a day mark (the source
    partition has closed every day up to it), ``["i"]`` when the source has
    never had a fix and, its event time not being the wall clock's, holds no
    day open until it has one (an idle source, as Flink's watermark idleness),
    ``["c", input_offset]`` when the source's state up to that input offset is
    checkpointed.
    """

    src: int
    items: list

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @staticmethod
    def decode(data: bytes) -> "VisitBatch":
        return _DECODER.decode(data)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(VisitBatch)
MAX_MESSAGE_BYTES = 900_000  # under Kafka's default 1 MB message limit


def visit_batch_messages(src: int, items: list, max_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """One chunk's items for one stage-2 partition as messages of at most ``max_bytes``, in order."""
    pieces = [items]
    while True:
        encoded = [VisitBatch(src, p).encode() for p in pieces]
        too_big = [k for k, e in enumerate(encoded) if len(e) > max_bytes and len(pieces[k]) > 1]
        if not too_big:
            return encoded
        # Halve every oversized piece (rare: a day's close of many visits).
        pieces = [half for k, p in enumerate(pieces)
                  for half in ((p[:len(p) // 2], p[len(p) // 2:]) if k in too_big else (p,))]


def check_items(items: list) -> None:
    """Raise ValueError unless every item has the shape stage 1 writes."""
    for item in items:
        kind = item[0] if isinstance(item, list) and item else None
        if kind == "v" and len(item) == 5 and isinstance(item[1], str) and isinstance(item[2], str) \
                and type(item[3]) is int and type(item[4]) is int and item[3] <= item[4]:
            if len(bytes.fromhex(item[1].replace("-", ""))) != 16:  # (raises ValueError if not hex)
                raise ValueError(f"visit id {item[1]!r} is not a uuid")
        elif kind == "m" and len(item) == 3 and isinstance(item[1], str) and isinstance(item[2], bool):
            dt.date.fromisoformat(item[1])
        elif kind == "i" and len(item) == 1:
            pass
        elif not (kind == "c" and len(item) == 2 and type(item[1]) is int):
            raise ValueError(f"not a visit-batches item: {str(item)[:80]}")
