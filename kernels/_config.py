"""The one place numba flags are set for every kernel.

fastmath leaves out ``nnan`` and ``ninf``: GPS data contains NaN, and the
kernels test for it.
"""

# numba wants a plain set here (a frozenset is refused).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Hot kernels are compiled once per machine and cached beside the source.
JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=FASTMATH)
