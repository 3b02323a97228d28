"""An open-addressing hash table from 64-bit id hashes to dense codes, in numpy arrays.

The officer registry looks up every fix's id hash; a sorted array needed a
full re-sort whenever officers joined, and a Python dict costs about a
hundred bytes an officer. Here a lookup is a few probes in numba and an
officer costs 16 bytes a slot at a load factor between 0.35 and 0.7 (about
35 bytes). Codes are never removed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._config import JIT_OPTIONS

EMPTY = -1
MIN_CAPACITY = 1024


@njit(**JIT_OPTIONS)
def _slot(keys, codes, h):
    """The slot holding ``h``, or the empty slot where it would go."""
    mask = keys.shape[0] - 1
    i = np.int64((h ^ (h >> np.uint64(29))) & np.uint64(mask))
    while codes[i] != EMPTY and keys[i] != h:
        i = (i + 1) & mask
    return i


@njit(**JIT_OPTIONS)
def _lookup(keys, codes, hashes, out):
    for r in range(hashes.shape[0]):
        out[r] = codes[_slot(keys, codes, hashes[r])]


@njit(**JIT_OPTIONS)
def _insert(keys, codes, hashes, new_codes):
    for r in range(hashes.shape[0]):
        i = _slot(keys, codes, hashes[r])
        keys[i] = hashes[r]
        codes[i] = new_codes[r]


def empty_table(capacity: int = MIN_CAPACITY) -> tuple[np.ndarray, np.ndarray]:
    cap = MIN_CAPACITY
    while cap < capacity:
        cap *= 2
    return np.zeros(cap, np.uint64), np.full(cap, EMPTY, np.int64)


def lookup(keys: np.ndarray, codes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Codes of ``hashes`` (``EMPTY`` where absent)."""
    out = np.empty(hashes.shape[0], np.int64)
    if hashes.shape[0]:
        _lookup(keys, codes, np.ascontiguousarray(hashes, np.uint64), out)
    return out


def insert(keys: np.ndarray, codes: np.ndarray, n_used: int, hashes: np.ndarray,
           new_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add absent, distinct ``hashes`` with their codes; returns the table (grown to stay under 70% full)."""
    need = n_used + hashes.shape[0]
    if need > 0.7 * keys.shape[0]:
        used = codes != EMPTY
        old_keys, old_codes = keys[used], codes[used]
        keys, codes = empty_table(need * 2)
        _insert(keys, codes, old_keys, old_codes)
    if hashes.shape[0]:
        _insert(keys, codes, np.ascontiguousarray(hashes, np.uint64), np.ascontiguousarray(new_codes, np.int64))
    return keys, codes
