"""Stage 2's day marks: cumulative, every input partition needed, each day closed once."""

import datetime as dt

from stream.stage2 import fold_mark

D = dt.date(2024, 3, 29)


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
