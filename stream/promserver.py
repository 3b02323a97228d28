"""A real Prometheus server (Debian's ``prometheus``) run with the shipped configuration.

Used by the demo and the tests: it scrapes the given workers with
``deploy/prometheus/prometheus.yml`` and its rules, changed in two places
only: the scrape targets, and the rule files' paths made absolute. Runs on a
free 127.0.0.1 port with a data directory of its own, and stops with its
parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from stream.broker import die_with_parent, free_port, stop_process

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


class PrometheusError(RuntimeError):
    pass


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def shipped_config(targets: list[str], config: Path = DEPLOY / "prometheus.yml") -> dict:
    """The shipped configuration scraping ``targets`` (host:port) instead of the compose workers."""
    doc = yaml.safe_load(config.read_text())
    doc["rule_files"] = [str((config.parent / f).resolve()) for f in doc.get("rule_files", [])]
    jobs = [j for j in doc["scrape_configs"] if j["job_name"] == "hotspot-dwell"]
    if len(jobs) != 1:
        raise PrometheusError(f"{config}: expected one scrape job named hotspot-dwell")
    jobs[0]["static_configs"] = [{"targets": list(targets)}]
    return doc


class PrometheusServer:
    """``with PrometheusServer(["127.0.0.1:9400"]) as prom: prom.query("up")``."""

    def __init__(self, targets: list[str], *, port: int | None = None, workdir: str | Path | None = None,
                 log_path: str | Path | None = None) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise PrometheusError("prometheus is not installed (Debian: apt-get install prometheus)")
        self.binary = binary
        self.targets = targets
        self.port = port or free_port()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="hotspot-dwell-prom-")
        self.workdir = Path(workdir or self._tmp.name)
        self.log_path = Path(log_path) if log_path else self.workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> "PrometheusServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(shipped_config(self.targets), sort_keys=False))
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d"],
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}; log {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready within {timeout_s:.0f} s; log {self.log_path}")

    def stop(self) -> None:
        stop_process(self.proc, 20.0)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP API ---------------------------------------------------------------------

    def _get(self, path: str, params: dict) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant vector result: ``[{"metric": {...}, "value": float}]`` (scalars as one unlabelled row)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": _number(data["result"][1])}]
        if data["resultType"] == "matrix":
            return [{"metric": r["metric"], "value": _number(r["values"][-1][1])} for r in data["result"]]
        return [{"metric": r["metric"], "value": _number(r["value"][1])} for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """``[{"metric": {...}, "t": [...], "v": [...]}]``."""
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        return [{"metric": r["metric"], "t": [float(t) for t, _ in r["values"]],
                 "v": [_number(v) for _, v in r["values"]]} for r in data["result"]]

    def wait_for(self, expr: str, ok, timeout_s: float = 90.0) -> list[dict]:
        """Poll ``expr`` until ``ok(result)``; raises with the last result on timeout."""
        deadline = time.monotonic() + timeout_s
        last: list[dict] | str = []
        while time.monotonic() < deadline:
            try:
                last = self.query(expr)
                if ok(last):
                    return last
            except PrometheusError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise PrometheusError(f"{expr}: not as expected within {timeout_s:.0f} s; last: {last}")


def _number(text: str) -> float:
    return math.nan if text == "NaN" else float(text)
