"""Output events: JSON values with CloudEvents binary-mode Kafka headers.

Every event has a deterministic id (uuid5 of what it is about), so a batch
replayed after a crash produces the same ids and consumers can de-duplicate.
The JSON Schema of each type is in ``stream/schemas/<type>.json``.
"""

from __future__ import annotations

import json
from importlib import resources

import msgspec
import numpy as np

from stream.tables import patrol_event_id, rfc3339_utc, uuid5_text

SOURCE = "urn:hotspot-dwell"
TYPE_PREFIX = "org.hotspot-dwell."
VISIT_OPENED = "visit.opened"
VISIT_CLOSED = "visit.closed"
PATROL_COMPLETED = "patrol.completed"
EVENT_TYPES = (VISIT_CLOSED, PATROL_COMPLETED)

Headers = list[tuple[str, bytes]]
_json = msgspec.json.Encoder().encode  # compact JSON, several times faster than json.dumps


def visit_id(officer_id: str, hotspot_id: str, start_ms: int) -> str:
    return uuid5_text(f"visit|{officer_id}|{hotspot_id}|{start_ms}")


_CE_SPEC = ("ce_specversion", b"1.0")
_CE_SOURCE = ("ce_source", SOURCE.encode())
_CE_CONTENT = ("content-type", b"application/json")
_CE_TYPES: dict[str, tuple[str, bytes]] = {}


def ce_headers(event_type: str, event_id: str, time_text: str, subject: str) -> Headers:
    """CloudEvents 1.0 binary content mode for Kafka (``ce_`` headers)."""
    ce_type = _CE_TYPES.get(event_type)
    if ce_type is None:
        ce_type = _CE_TYPES[event_type] = ("ce_type", (TYPE_PREFIX + event_type).encode())
    return [_CE_SPEC, ("ce_id", event_id.encode()), _CE_SOURCE, ce_type, ("ce_time", time_text.encode()),
            ("ce_subject", subject.encode()), _CE_CONTENT]


def visit_events(officer_ids: np.ndarray, hotspot_ids: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray,
                 n_fixes: np.ndarray, min_patrol_s: float, visit_ids: list[str] | None = None,
                 interval_ms: np.ndarray | None = None,
                 gap_limit_ms: np.ndarray | None = None) -> list[tuple[str, int, bytes, bytes, Headers]]:
    """``(topic kind, row, key, value, headers)`` for closed visits and the patrols among them, ``row``
    being the visit's position in the arrays (``visit_ids``: their :func:`visit_id` values, when the
    caller has them already; ``interval_ms``, ``gap_limit_ms``: the interval estimate and gap limit each
    closed under, 0 when not given)."""
    starts = rfc3339_utc(start_ms)
    ends = rfc3339_utc(end_ms)
    if visit_ids is None:
        visit_ids = [visit_id(o, h, s) for o, h, s in zip(officer_ids.tolist(), hotspot_ids.tolist(),
                                                           start_ms.tolist())]
    out = []
    min_patrol_ms = min_patrol_s * 1000.0
    none = np.zeros(len(start_ms), np.int64)
    interval_s = (none if interval_ms is None else np.asarray(interval_ms)) / 1000.0
    gap_limit_s = (none if gap_limit_ms is None else np.asarray(gap_limit_ms)) / 1000.0
    for i, (o, h, s_ms, e_ms, n, s_txt, e_txt, vid, iv, gap) in enumerate(zip(
            officer_ids.tolist(), hotspot_ids.tolist(), start_ms.tolist(), end_ms.tolist(), n_fixes.tolist(),
            starts.tolist(), ends.tolist(), visit_ids, interval_s.tolist(), gap_limit_s.tolist())):
        duration = (e_ms - s_ms) / 1000.0
        patrol = (e_ms - s_ms) >= min_patrol_ms
        body = {"visit_id": vid, "officer_id": o, "hotspot_id": h, "start": s_txt, "end": e_txt,
                "duration_s": duration, "fixes": n, "patrol": patrol, "interval_s": iv, "gap_limit_s": gap}
        key = h.encode()
        out.append(("dwell-intervals", i, key, _json(body), ce_headers(VISIT_CLOSED, vid, e_txt, h)))
        if patrol:
            pid = patrol_event_id(o, h, s_ms)
            body = {"event_id": pid, "officer_id": o, "hotspot_id": h, "start": s_txt, "end": e_txt,
                    "duration_s": duration}
            out.append(("patrol-events", i, key, _json(body), ce_headers(PATROL_COMPLETED, pid, e_txt, h)))
    return out


def event_type(headers) -> str:
    """The event type (without prefix) from a record's CloudEvents headers, or ''."""
    for name, value in headers or ():
        if name == "ce_type":
            return value.decode("utf-8", "replace").removeprefix(TYPE_PREFIX)
    return ""


def visit_opened_events(officer_ids, hotspot_ids, start_ms) -> list[tuple[bytes, bytes, Headers]]:
    """``visit.opened``: an officer has entered a hot spot (the live "who is there"), in row order."""
    starts = rfc3339_utc(start_ms)
    out = []
    for o, h, s_ms, s_txt in zip(officer_ids.tolist(), hotspot_ids.tolist(), start_ms.tolist(), starts.tolist()):
        vid = visit_id(o, h, s_ms)
        body = {"visit_id": vid, "officer_id": o, "hotspot_id": h, "start": s_txt}
        out.append((h.encode(), _json(body), ce_headers(VISIT_OPENED, uuid5_text(f"opened|{vid}"), s_txt, h)))
    return out


def dead_letter_headers(reason: str, topic: str, partition: int, offset: int) -> Headers:
    """Why a record was dead-lettered and where it came from (the value is untouched)."""
    return [("reason", reason.encode()), ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()), ("source_offset", str(offset).encode())]


# A dead letter carries at most this much of a key or value: a record near the broker's size limit
# plus the headers would be refused, and the whole record stays in the source topic anyway.
DEAD_LETTER_MAX_KEY_BYTES = 1024
DEAD_LETTER_MAX_VALUE_BYTES = 64 * 1024


def dead_letter_record(key: bytes | None, value: bytes | None, reason: str, topic: str, partition: int,
                       offset: int) -> tuple[bytes | None, bytes | None, Headers]:
    """``(key, value, headers)`` of a dead letter: the record as it came, cut to a size any broker takes
    (``key_truncated_from`` / ``value_truncated_from`` then give the original length)."""
    headers = dead_letter_headers(reason, topic, partition, offset)
    if key is not None and len(key) > DEAD_LETTER_MAX_KEY_BYTES:
        headers.append(("key_truncated_from", str(len(key)).encode()))
        key = key[:DEAD_LETTER_MAX_KEY_BYTES]
    if value is not None and len(value) > DEAD_LETTER_MAX_VALUE_BYTES:
        headers.append(("value_truncated_from", str(len(value)).encode()))
        value = value[:DEAD_LETTER_MAX_VALUE_BYTES]
    return key, value, headers


def schema(event_type: str) -> dict:
    """The JSON Schema of an event type's value."""
    return json.loads(resources.files("stream").joinpath("schemas", f"{event_type}.json").read_text())
