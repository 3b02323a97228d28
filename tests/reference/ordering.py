"""Obviously-correct reorder buffer, one fix at a time, with dicts and lists.

The oracle for :func:`kernels.ordering.order_fixes`, plus the seeded stream
generator shared by the tests and the throughput measurement.
"""

from __future__ import annotations

import numpy as np

DUPLICATE = "duplicate"
LATE = "late"
SPEED = "impossible_speed"


def to_ms(seconds: float) -> int:
    """Thresholds are compared in whole milliseconds (inf: effectively never)."""
    return 2**62 if seconds == float("inf") else int(round(float(seconds) * 1000.0))


class ReferenceOrderer:
    """Per-officer reorder buffer.

    ``push`` and ``flush`` return ``(released, rejected)``: released is a list
    of ``(officer, ts_ms, x_m, y_m, row)`` and rejected of ``(row, reason)``
    with reason one of the strings above.
    """

    def __init__(self, reorder_window_s: float, max_speed_mps: float, max_gap_s: float | None = None,
                 reanchor_after: int = 3):
        # max_gap_s no longer matters: every fix is speed-checked.
        self.window_ms = to_ms(reorder_window_s)
        self.max_speed_mps = float(max_speed_mps)
        self.reanchor_after = int(reanchor_after)
        self.released_ts: dict[int, int] = {}
        self.accepted: dict[int, tuple[int, float, float]] = {}
        # Per officer: the current run of consecutive speed rejects, each
        # plausible from the one before, as a list of (ts, x, y).
        self.bad_run: dict[int, list[tuple[int, float, float]]] = {}
        self.max_seen: dict[int, int] = {}
        self.pending: dict[int, dict[int, tuple[float, float, int]]] = {}

    def push(self, officer: int, ts: int, x: float, y: float, row: int):
        released: list = []
        rejected: list = []
        pending = self.pending.setdefault(officer, {})
        last = self.released_ts.get(officer)
        if last is not None and ts < last:
            rejected.append((row, LATE))
        elif ts == last or ts in pending:
            rejected.append((row, DUPLICATE))
        else:
            pending[ts] = (x, y, row)
            self.max_seen[officer] = max(self.max_seen.get(officer, ts), ts)
            limit = self.max_seen[officer] - self.window_ms
            for t in sorted(pending):
                if t <= limit:
                    self._release(officer, t, released, rejected)
        return released, rejected

    def flush(self, before_ms: int | None = None):
        """Release the pending fixes of every officer, or only of those whose newest fix is older than
        ``before_ms``."""
        released: list = []
        rejected: list = []
        for officer in sorted(self.pending):
            if before_ms is not None and not self.max_seen[officer] < before_ms:
                continue
            for t in sorted(self.pending[officer]):
                self._release(officer, t, released, rejected)
        return released, rejected

    def _too_fast(self, a, b) -> bool:
        """From fix a to fix b, (ts, x, y) each, faster than max_speed?"""
        # distance / (dt / 1000) > max_speed, squared to stay exact; NaN: False.
        dist2 = (b[1] - a[1]) * (b[1] - a[1]) + (b[2] - a[2]) * (b[2] - a[2])
        lim = self.max_speed_mps * (b[0] - a[0])
        return dist2 * 1e6 > lim * lim

    def _release(self, officer, t, released, rejected):
        x, y, row = self.pending[officer].pop(t)
        self.released_ts[officer] = t
        fix = (t, x, y)
        run = self.bad_run.setdefault(officer, [])
        if officer in self.accepted and self._too_fast(self.accepted[officer], fix):
            if run and self._too_fast(run[-1], fix):
                run.clear()  # not plausible from the previous reject
            run.append(fix)
            if len(run) < self.reanchor_after:
                rejected.append((row, SPEED))
                return
            # reanchor_after consistent rejects in a row: the anchor was wrong.
        run.clear()
        self.accepted[officer] = fix
        released.append((officer, t, x, y, row))


def reference_order(officer, ts_ms, x_m, y_m, row, *, reorder_window_s, max_speed_mps,
                    max_gap_s=None, reanchor_after=3, flush=True):
    """Run a whole stream through a fresh :class:`ReferenceOrderer`."""
    ref = ReferenceOrderer(reorder_window_s, max_speed_mps, max_gap_s, reanchor_after)
    released: list = []
    rejected: list = []
    for o, t, x, y, r in zip(officer, ts_ms, x_m, y_m, row):
        rel, rej = ref.push(int(o), int(t), float(x), float(y), int(r))
        released += rel
        rejected += rej
    if flush:
        rel, rej = ref.flush()
        released += rel
        rejected += rej
    return released, rejected


def random_stream(seed: int, n_fixes: int, n_officers: int, *, period_s: float = 15.0,
                  late_share: float = 0.02, dup_share: float = 0.01,
                  teleport_share: float = 0.001, delay_s: float = 120.0):
    """A seeded stream of fixes in arrival order, as numpy arrays.

    Officers walk at about 1.4 m/s around a 2 km square, reporting every
    ``period_s`` (jittered); some fixes teleport, some are sent twice, some
    arrive up to ``delay_s`` late.

    Returns
    -------
    officer : int64 (n,) ; ts_ms : int64 (n,) ; x_m, y_m : float64 (n,) ;
    row : int64 (n,) arrival index.
    """
    rng = np.random.default_rng(seed)
    officer = rng.integers(0, n_officers, n_fixes)
    order = np.argsort(officer, kind="stable")
    officer = officer[order]
    first = np.r_[True, officer[1:] != officer[:-1]]
    step_ms = rng.integers(int(period_s * 500), int(period_s * 1500) + 1, n_fixes)
    step_ms[first] = rng.integers(0, 3_600_000, int(first.sum()))
    group = np.cumsum(first) - 1
    base = np.cumsum(step_ms)
    start = base[first][group] - step_ms[first][group]
    ts = 1_700_000_000_000 + (base - start)
    heading = rng.uniform(0, 2 * np.pi, n_fixes)
    dist = np.where(first, 0.0, 1.4 * step_ms / 1000.0)

    def walk(step):  # per-officer cumulative sum from a random origin
        total = np.cumsum(step)
        before = (total - step)[first]
        return total - before[group] + rng.uniform(0, 2000, before.shape[0])[group]

    x = walk(dist * np.cos(heading))
    y = walk(dist * np.sin(heading))
    teleport = rng.random(n_fixes) < teleport_share
    x[teleport] += 50_000.0
    dup = rng.random(n_fixes) < dup_share
    officer, ts, x, y = (np.concatenate([a, a[dup]]) for a in (officer, ts, x, y))
    arrival = ts + (rng.random(officer.shape[0]) < late_share) * rng.integers(
        0, int(delay_s * 1000), officer.shape[0]
    )
    order = np.argsort(arrival, kind="stable")
    officer, ts, x, y = officer[order], ts[order], x[order], y[order]
    return officer, ts, x + 400_000.0, y + 280_000.0, np.arange(officer.shape[0], dtype=np.int64)
