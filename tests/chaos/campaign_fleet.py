"""``hotspot-dwell worker`` processes in named slots, started, SIGKILLed, restarted and stopped.

A slot (``w0``, ``w1``, ...) is a place in the fleet; each process started in it is an incarnation
with its own log and metrics port (a :class:`stream.bench.Worker`). A restarted worker's state comes
back from Kafka (the officer-checkpoints and presence-checkpoints topics).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream.bench import Worker

RESTORED = b"restored from checkpoint"  # stage 1's log line (at --loglevel info) for each partition restored


@dataclass
class Incarnation:
    """One worker process in a slot; times are seconds on the campaign's clock."""

    slot: str
    number: int
    proc: subprocess.Popen
    log_path: Path
    metrics_port: int
    started_s: float
    ready_s: float | None = None
    ended_s: float | None = None
    ended_by: str | None = None  # "sigkill", "sigterm" or "exited" (on its own)
    exit_code: int | None = None
    stopping: bool = False  # a SIGTERM is on its way: not a victim for the killer

    @property
    def name(self) -> str:
        return f"{self.slot}.{self.number}"

    @property
    def live(self) -> bool:
        return self.ended_s is None

    def ready_now(self) -> bool:
        """Whether the worker's metrics say ready (both consumer groups assigned) at this moment."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                return b"hotspot_dwell_ready 1.0" in r.read()
        except OSError:
            return False

    def restores(self) -> int:
        """Partitions this incarnation restored from a stage-1 checkpoint."""
        try:
            return self.log_path.read_bytes().count(RESTORED)
        except OSError:
            return 0

    def summary(self) -> dict:
        return {"worker": self.name, "pid": self.proc.pid, "started_s": round(self.started_s, 2),
                "ready_after_s": None if self.ready_s is None else round(self.ready_s - self.started_s, 2),
                "ended_s": None if self.ended_s is None else round(self.ended_s, 2), "ended_by": self.ended_by,
                "exit_code": self.exit_code, "restored_partitions": self.restores(), "log": str(self.log_path)}


@dataclass
class Fleet:
    """The worker processes of one app; ``clock`` gives seconds since the campaign began."""

    bootstrap: str
    prefix: str
    app_id: str
    hotspots: Path
    schedule: Path
    partitions: int
    workdir: Path
    clock: Callable[[], float]
    incarnations: list[Incarnation] = field(default_factory=list)

    def start(self, slot: str) -> Incarnation:
        number = sum(1 for i in self.incarnations if i.slot == slot)
        worker = Worker(self.bootstrap, self.prefix, self.hotspots, self.workdir, self.partitions, f"{slot}.{number}",
                        "--schedule", str(self.schedule), "--loglevel", "info", app_id=self.app_id)
        inc = Incarnation(slot, number, worker.proc, worker.log, worker.port, self.clock())
        self.incarnations.append(inc)
        return inc

    def live(self) -> list[Incarnation]:
        return [i for i in self.incarnations if i.live]

    def kill(self, inc: Incarnation) -> None:
        """SIGKILL: no checkpoint, no leaving the group; the broker finds out when the session times out."""
        inc.proc.send_signal(signal.SIGKILL)
        inc.exit_code = inc.proc.wait()
        inc.ended_s, inc.ended_by = self.clock(), "sigkill"

    def stop(self, inc: Incarnation, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait (blocking: run it in a thread); SIGKILL after ``timeout_s``."""
        inc.stopping = True
        inc.proc.send_signal(signal.SIGTERM)
        try:
            inc.exit_code = inc.proc.wait(timeout=timeout_s)
            inc.ended_by = "sigterm"
        except subprocess.TimeoutExpired:
            # Evidence first: SIGUSR1 makes a worker (mode's Worker) write every thread's and task's
            # stack to its log.
            inc.proc.send_signal(signal.SIGUSR1)
            try:
                inc.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                pass
            inc.proc.kill()
            inc.exit_code = inc.proc.wait()
            inc.ended_by = "sigkill after sigterm timed out"
        inc.ended_s = self.clock()
        return inc.exit_code

    def reap_exited(self) -> list[Incarnation]:
        """Workers that ended on their own since the last call (a crash the campaign did not cause)."""
        exited = []
        for inc in self.live():
            if not inc.stopping and inc.proc.poll() is not None:
                inc.exit_code, inc.ended_s, inc.ended_by = inc.proc.returncode, self.clock(), "exited"
                exited.append(inc)
        return exited

    async def watch_ready(self, inc: Incarnation, timeout_s: float = 180.0) -> None:
        """Record when ``inc`` first reports ready; gives up quietly if it dies first."""
        deadline = time.monotonic() + timeout_s
        while inc.live and inc.proc.poll() is None and time.monotonic() < deadline:
            if await asyncio.to_thread(inc.ready_now):
                inc.ready_s = self.clock()
                return
            await asyncio.sleep(0.2)

    async def stop_all(self) -> dict[str, int]:
        """SIGTERM every live worker at once; their exit codes by name."""
        live = [i for i in self.live() if not i.stopping]
        for inc in live:
            inc.stopping = True  # before the threads run: not taken for a crash meanwhile
        codes = await asyncio.gather(*(asyncio.to_thread(self.stop, i) for i in live))
        return {i.name: c for i, c in zip(live, codes)}

    def kill_all(self) -> None:
        """Last resort (finally blocks): nothing is left behind, and nothing of theirs matters any more."""
        for inc in self.incarnations:
            if inc.proc.poll() is None:
                inc.proc.kill()
                inc.proc.wait()
