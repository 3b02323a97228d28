"""Real processes for integration tests: the embedded broker and workers.

Each test gets its own topic prefix, app id and state directory, so tests
sharing one broker never see each other's records (quix-streams' recipe).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from stream.broker import EmbeddedBroker, die_with_parent, free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


@pytest.fixture
def namespace():
    tag = uuid.uuid4().hex[:8]
    return {"prefix": f"t{tag}.", "app_id": f"app-{tag}"}


class WorkerProcess:
    """``hotspot-dwell worker`` in a subprocess, logging to a file."""

    def __init__(self, args: list[str], log_path: Path, metrics_port: int, env: dict | None = None) -> None:
        self.log_path = log_path
        self.metrics_port = metrics_port
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", *args], cwd=REPO,
                                     stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
                                     preexec_fn=die_with_parent)
        self.started = time.monotonic()

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"worker did not stop on SIGTERM within {timeout} s; log {self.log_path}")
        return self.proc.returncode

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Seconds from process start until its metrics say ready."""
        from stream.live_demo import wait_ready

        wait_ready(self.metrics_port, self.proc, timeout_s)
        return time.monotonic() - self.started

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(broker, namespace, tmp_path):
    workers: list[WorkerProcess] = []

    def start(hotspots: Path, *extra: str, name: str = "w", env: dict | None = None,
              time_check: bool = False) -> WorkerProcess:
        """A worker; ``time_check`` keeps the default event-time bounds (for fixes near the wall clock)."""
        port = free_port()
        args = ["--brokers", broker.bootstrap, "--hotspots", str(hotspots), "--topic-prefix", namespace["prefix"],
                "--app-id", namespace["app_id"], "--state-dir", str(tmp_path / f"state-{name}-{len(workers)}"),
                *([] if time_check else ["--no-time-check"]), "--loglevel", "info", "--metrics-port", str(port),
                *extra]
        w = WorkerProcess(args, tmp_path / f"{name}-{len(workers)}.log", port, env)
        workers.append(w)
        return w

    yield start
    for w in workers:
        if w.proc.poll() is None:
            w.stop()


def run(coro):
    return asyncio.run(coro)
