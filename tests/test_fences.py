import numpy as np
import pytest

from kernels.fences import FENCE_EVENTS, fence_codes, fence_event

CELLS = [
    (False, True, "enter"),
    (True, True, "inside"),
    (True, False, "exit"),
    (False, False, "outside"),
]


@pytest.mark.parametrize(("was_inside", "is_inside", "event"), CELLS)
def test_fence_event_all_four_cells(was_inside, is_inside, event):
    assert fence_event(was_inside, is_inside) == event


def test_fence_codes_match_fence_event():
    was = np.array([c[0] for c in CELLS])
    now = np.array([c[1] for c in CELLS])
    codes = fence_codes(was, now)
    assert codes.dtype == np.int8
    assert [FENCE_EVENTS[c] for c in codes] == [c[2] for c in CELLS]


def test_fence_codes_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one length"):
        fence_codes([True, False], [True])
