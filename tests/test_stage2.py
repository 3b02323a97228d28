"""Stage 2's day marks: cumulative, every input partition needed, each day closed once."""

import datetime as dt
import uuid

from stream.stage2 import fold_mark

D = dt.date(2024, 3, 29)


def _vid(k: int) -> str:
    """A visit id (uuid text) for test item k."""
    return str(uuid.UUID(int=k + 1))


def test_a_day_closes_when_every_input_partition_has_passed_it():
    doc: dict = {}
    assert fold_mark(doc, 0, D, True, 2) == []
    assert fold_mark(doc, 0, D + dt.timedelta(days=1), False, 2) == []
    # Partition 1 started later: its first mark closes everything before it.
    closing = fold_mark(doc, 1, D + dt.timedelta(days=1), False, 2)
    assert closing == [D, D + dt.timedelta(days=1)]
    assert doc["days"][D.isoformat()] is True  # had visits somewhere


def test_each_day_is_returned_once_and_marks_never_go_back():
    doc: dict = {"closed": [D.isoformat()]}
    fold_mark(doc, 0, D + dt.timedelta(days=2), False, 1)
    assert fold_mark(doc, 0, D, True, 1) == [D + dt.timedelta(days=2)]  # D already closed
    assert doc["through"]["0"] == (D + dt.timedelta(days=2)).isoformat()


# -- PartitionPresence: incremental rows == the replay's table ------------------------------

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import geo  # noqa: E402
from stream.engine import Visits  # noqa: E402
from stream.policing_day import PolicingCalendar  # noqa: E402
from stream.schedule import Schedule, ScheduleEntry  # noqa: E402
from stream.stage2 import PartitionPresence, PresenceModel  # noqa: E402
from stream.visit_batches import VisitBatch  # noqa: E402
from stream.tables import hotspot_days_table  # noqa: E402

CAL = PolicingCalendar("Europe/London", "06:00")
HS = geo.load_hotspots(geo.NOTTINGHAM_HOTSPOTS_PATH)
OWNED = list(HS.ids[:4])
# Around the spring clock change (a 23-hour policing day) and an ordinary day.
DAY0 = dt.date(2024, 3, 30)
T0 = CAL.day_start_ms(DAY0)
MIN = 60_000


def model_with_schedule():
    entries = [ScheduleEntry(DAY0, OWNED[0], dt.time(14), dt.time(0), 15.0),
               ScheduleEntry(DAY0 + dt.timedelta(days=1), OWNED[1], dt.time(22), dt.time(2), 10.0),
               ScheduleEntry(DAY0, OWNED[2], dt.time(6), dt.time(5, 59), 40.0)]
    return PresenceModel(HS, Schedule(entries), CAL, 900.0)


visit_lists = st.lists(st.tuples(st.sampled_from(range(len(OWNED))), st.integers(0, 2 * 24 * 60 - 1),
                                 st.sampled_from([0, 1, 5, 14, 15, 16, 40, 300])), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(visits=visit_lists, cuts=st.lists(st.integers(0, 40), max_size=4), data=st.data())
def test_partition_presence_rows_equal_the_replay_table(visits, cuts, data):
    model = model_with_schedule()
    rows = [(OWNED[h], T0 + start * MIN, T0 + (start + length) * MIN) for h, start, length in visits]
    items = [["v", _vid(i), h, s, e] for i, (h, s, e) in enumerate(rows)]
    items = data.draw(st.permutations(items))  # arrival order does not matter
    state = PartitionPresence(model, 0, OWNED, 1)
    bounds = [0, *sorted(c for c in cuts if c <= len(items)), len(items)]
    checkpointed = marked = 0  # items before stage 1's last complete checkpoint, and before its last mark
    for a, b in zip(bounds[:-1], bounds[1:]):
        state.apply(VisitBatch(0, items[a:b]))
        action = data.draw(st.sampled_from(["checkpoint", "stage-1 crash", "stage-2 restart", "none"]))
        if action == "checkpoint":
            # The mark goes out with the snapshot; the checkpoint before it is complete.
            state.apply(VisitBatch(0, [["c", b]]))
            checkpointed, marked = marked, b
        elif action == "stage-1 crash":
            # Stage 1 restarts from its checkpoint and sends everything since, chunked differently.
            again = items[checkpointed:b]
            half = len(again) // 2
            skipped = [state.apply(VisitBatch(0, part)).skipped for part in (again[:half], again[half:])]
            assert sum(skipped) == len(again)
        elif action == "stage-2 restart":
            # A restart from a snapshot carries on exactly.
            restored = PartitionPresence(model, 0, OWNED, 1)
            restored.restore(state.snapshot())
            state = restored
    # Stage 1 marks every day in turn.
    closing = state.apply(VisitBatch(0, [["m", (DAY0 + dt.timedelta(days=k)).isoformat(), False]
                                                  for k in range(-1, 4)]))
    got = sorted(tuple(json.loads(v)[c] for c in ("policing_day", "hotspot_id", "presence_s", "officer_s", "visits",
                                                     "patrols", "met", "window_presence_s", "scheduled"))
                 for _, v, h in closing.events if dict(h)["ce_type"].endswith(b"day_closed"))
    # The replay's table over the same visits, for the days that have rows.
    idx = np.array([HS.index_of(h) for h, _, _ in rows], np.int64)
    v = Visits(np.zeros(len(rows), np.int64), idx, np.array([s for _, s, _ in rows], np.int64),
               np.array([e for _, _, e in rows], np.int64), np.ones(len(rows), np.int64), np.zeros(len(rows), np.int64),
               np.zeros(len(rows), np.int64))
    table = hotspot_days_table(v, HS, model.schedule, CAL, 900.0,
                               hotspot_index=np.array([HS.index_of(h) for h in OWNED]))
    want = sorted((d, h, p, o, int(n), int(pt), bool(m), w, bool(s)) for d, h, p, o, n, pt, m, w, s in zip(
        table["policing_day"], table["hotspot_id"], table["presence_s"], table["officer_s"], table["visits"],
        table["patrols"], table["met"], table["window_presence_s"], table["scheduled"]))
    assert got == want
    assert state.days == {}  # closed days leave no state behind


def test_dosage_met_once_when_the_window_reaches_the_target():
    model = model_with_schedule()
    state = PartitionPresence(model, 0, OWNED, 1)
    start = CAL.window_ms(DAY0, dt.time(14), dt.time(0))[0]
    out = state.apply(VisitBatch(0, [["v", _vid(1), OWNED[0], start, start + 10 * MIN]]))
    assert out.events == []
    out = state.apply(VisitBatch(0, [["v", _vid(2), OWNED[0], start + 8 * MIN, start + 15 * MIN]]))
    assert len(out.events) == 1
    body = json.loads(out.events[0][1])
    assert body["window_presence_s"] == 900.0 and body["target_minutes"] == 15.0
    out = state.apply(VisitBatch(0, [["v", _vid(3), OWNED[0], start + 20 * MIN, start + 40 * MIN]]))
    assert out.events == []


def test_a_visit_after_its_day_closed_is_not_counted():
    state = PartitionPresence(model_with_schedule(), 0, OWNED, 1)
    state.apply(VisitBatch(0, [["m", DAY0.isoformat(), False]]))
    out = state.apply(VisitBatch(0, [["v", _vid(4), OWNED[0], T0 + MIN, T0 + 2 * MIN]]))
    assert out.late_visits == 1 and state.days == {}


def test_a_message_with_a_bad_item_is_an_error_and_changes_nothing():
    state = PartitionPresence(model_with_schedule(), 0, OWNED, 1)
    good = [["v", _vid(0), OWNED[0], T0, T0 + MIN], ["m", DAY0.isoformat(), True]]
    for bad in (["x"], ["v", "not-a-uuid", OWNED[0], T0, T0 + MIN], ["v", _vid(1), OWNED[0], T0 + MIN, T0],
                ["m", "2024-13-01", True], ["c", "7"]):
        with pytest.raises(ValueError):
            state.apply(VisitBatch(0, good + [bad]))
        # Nothing of the good items before it was applied: no visit, no day closed, no id remembered.
        assert state.days == {} and state.marks == {} and len(state.since_checkpoint.get(0, ())) == 0
    applied = state.apply(VisitBatch(0, good))
    assert len(applied.visits) == 1 and [day for day, _ in applied.closed] == [DAY0]


def test_a_big_fix_batch_is_split_into_ordered_messages_that_all_apply():
    from stream.visit_batches import visit_batch_messages

    items = [["v", _vid(i), OWNED[i % 4], T0 + i * 1000, T0 + i * 1000 + 5 * MIN] for i in range(30_000)]
    items.append(["m", DAY0.isoformat(), True])
    messages = visit_batch_messages(2, items, max_bytes=200_000)
    assert len(messages) > 5 and all(len(m) <= 200_000 for m in messages)
    batches = [VisitBatch.decode(m) for m in messages]
    assert [it for b in batches for it in b.items] == items and {b.src for b in batches} == {2}
    state = PartitionPresence(model_with_schedule(), 0, OWNED, 1)
    applied = [state.apply(b) for b in batches]
    assert not any(a.skipped for a in applied)
    assert sum(len(a.visits) for a in applied) == 30_000
    assert sum(state.apply(b).skipped for b in batches) == 30_000  # re-sent: skipped, every visit


def test_visit_ids_are_kept_until_the_source_has_checkpointed_twice():
    state = PartitionPresence(model_with_schedule(), 0, OWNED, 2)
    visit = ["v", _vid(1), OWNED[0], T0 + MIN, T0 + 2 * MIN]
    state.apply(VisitBatch(0, [visit]))
    assert state.apply(VisitBatch(1, [["c", 10]])).skipped == 0  # another source's mark: no effect on source 0
    assert state.apply(VisitBatch(0, [visit])).skipped == 1
    # A mark is sent while its checkpoint is written: if that write is lost, stage 1
    # restarts from the one before, so the visit may still come again.
    state.apply(VisitBatch(0, [["c", 10]]))
    assert state.apply(VisitBatch(0, [visit])).skipped == 1
    state.apply(VisitBatch(0, [["c", 20]]))
    assert len(state.since_checkpoint[0]) == 0  # memory stays bounded by two checkpoint intervals


# -- Regressions found by the crash campaign (tests/chaos/campaign.py) ----------------------------


def test_messages_read_again_after_a_restore_are_not_counted_twice():
    """Regression: when stage 2 was a Faust agent, Faust committed its acks every commit interval and not
    on a revoke (a group's committed offset can lag a snapshot whoever commits), so the next owner of
    a partition re-read messages that its restored snapshot held already, and visits older
    than their source's last two checkpoint marks were counted twice (hot spot-days with too many
    visits, and a dosage_met repeated with a different body)."""
    import asyncio

    from stream.presence_runtime import PresenceRuntime
    from stream.settings import WorkerSettings

    model = model_with_schedule()
    sent = []

    async def send(*args):
        sent.append(args)

    runtime = PresenceRuntime(WorkerSettings(partitions=1), model, [OWNED], send)
    # One visit a message, the source checkpointing after each: by the end the first visits are older
    # than the source's last two marks, so only the offsets can tell that they are in the snapshot.
    messages = [VisitBatch(0, [["v", _vid(k), OWNED[k % 4], T0 + k * MIN, T0 + (k + 1) * MIN], ["c", k]]).encode()
                for k in range(6)]

    async def feed(state, offsets):
        for offset in offsets:
            await runtime.handle(state, messages[offset], offset)

    state = PartitionPresence(model, 0, OWNED, 1)
    asyncio.run(feed(state, range(6)))
    restored = PartitionPresence(model, 0, OWNED, 1)
    restored.restore(state.snapshot())
    asyncio.run(feed(restored, range(2, 6)))  # the group's committed offset lagged the snapshot by four
    assert sum(hd.visits for hd in restored.days.values()) == 6
    assert runtime.stats.reread == 4
