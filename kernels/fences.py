"""tile38's fence vocabulary as a pure function of (was_inside, is_inside).

=============  ==========  =========
was_inside     is_inside   event
=============  ==========  =========
False          True        enter
True           True        inside
True           False       exit
False          False       outside
=============  ==========  =========

(tidwall/tile38 ``internal/server/fence.go``.) The table lives in
:func:`_fence_code`; :func:`fence_event` and :func:`fence_codes` both use it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS

FENCE_OUTSIDE = 0
FENCE_ENTER = 1
FENCE_INSIDE = 2
FENCE_EXIT = 3
# Indexed by code.
FENCE_EVENTS = ("outside", "enter", "inside", "exit")


@njit("int8(boolean, boolean)", **JIT_OPTIONS)
def _fence_code(was_inside, is_inside):
    if is_inside:
        return FENCE_INSIDE if was_inside else FENCE_ENTER
    return FENCE_EXIT if was_inside else FENCE_OUTSIDE


@njit("void(boolean[::1], boolean[::1], int8[::1])", **JIT_OPTIONS)
def _fence_codes_kernel(was_inside, is_inside, out):
    for i in range(out.shape[0]):
        out[i] = _fence_code(was_inside[i], is_inside[i])


def fence_event(was_inside: bool, is_inside: bool) -> str:
    """"enter", "inside", "exit" or "outside" for one transition."""
    return FENCE_EVENTS[_fence_code(bool(was_inside), bool(is_inside))]


def fence_codes(was_inside, is_inside) -> np.ndarray:
    """Fence event codes for arrays of transitions.

    Parameters
    ----------
    was_inside, is_inside : bool (n,)

    Returns
    -------
    int8 (n,)
        ``FENCE_*`` codes; ``FENCE_EVENTS[code]`` is the name.
    """
    was = np.ascontiguousarray(was_inside, dtype=np.bool_)
    now = np.ascontiguousarray(is_inside, dtype=np.bool_)
    if was.ndim != 1 or was.shape != now.shape:
        raise ValueError(
            f"was_inside and is_inside must be 1-D of one length, got {was.shape} and {now.shape}"
        )
    out = np.empty(was.shape[0], np.int8)
    _fence_codes_kernel(was, now, out)
    return out
