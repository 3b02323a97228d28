"""A real Prometheus (Debian's) scrapes a real worker with the shipped configuration and rules.

The broker, a worker with a schedule, a simulated policing day and Prometheus
on free ports: every recording rule and every PromQL expression of both
dashboards returns data through the HTTP API, a live scrape passes
``promtool check metrics``, and the control-room figures (patrols, presence
and met per hot spot, compliance overall and per district) equal the replay
of the same day.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from geo.hotspots import load_hotspots
from stream.control_room import CONTROL_ROOM_QUERIES, draw, snapshot
from stream.producer import produce
from stream.promserver import PrometheusServer
from stream.replay import replay
from stream.schedule import draw_schedule
from tests.integration.test_streaming import (
    DAY,
    HOTSPOTS,
    PARTITIONS,
    collect,
    day_closed_rows,
    day_records,
    write_jsonl,
)
from tests.test_metrics import require_promtool

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def require_prometheus() -> None:
    if shutil.which("prometheus") is None:
        if os.environ.get("HOTSPOT_DWELL_CI"):
            pytest.fail("prometheus is missing but .ci/run should have installed Debian's prometheus")
        pytest.skip("prometheus not installed (apt-get install prometheus)")


def dashboard_expressions() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every target of both shipped dashboards."""
    spec = importlib.util.spec_from_file_location("dashboards", REPO / "deploy" / "grafana" / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = []
    for name in ("control-room.json", "engine.json"):
        doc = json.loads((REPO / "deploy" / "grafana" / "dashboards" / name).read_text())
        out += [(name, title, expr) for title, expr in module.dashboard_queries(doc)]
    return out


def recording_rules() -> list[str]:
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules" / "recording.yml").read_text())
    return [r["record"] for g in doc["groups"] for r in g["rules"]]


def by_hotspot(rows) -> dict[str, float]:
    return {r["metric"]["hotspot_id"]: r["value"] for r in rows}


def test_real_prometheus_scrapes_the_worker_and_agrees_with_replay(broker, namespace, start_worker, tmp_path):
    require_prometheus()
    promtool = require_promtool()
    records = day_records(seed=7)
    hs = load_hotspots(HOTSPOTS)
    schedule_path = tmp_path / "schedule.csv"
    draw_schedule(hs.ids, first_day=DAY, days=1, seed=7, groups=hs.groups).write_csv(schedule_path)
    expected = replay(write_jsonl(records, tmp_path / "day.jsonl"), hs, schedule_path)
    days = expected.hotspot_days
    mine = [i for i, d in enumerate(days["policing_day"]) if d == DAY.isoformat()]
    want = {col: {days["hotspot_id"][i]: days[col][i] for i in mine}
            for col in ("patrols", "presence_s", "met", "scheduled", "window_presence_s")}
    assert sum(want["patrols"].values()) > 5 and 0 < sum(want["met"].values()) < sum(want["scheduled"].values())
    comp = expected.compliance
    want_compliance = {(g, float(c)) for d, g, c in zip(comp["policing_day"], comp["group"], comp["compliance"])
                       if d == DAY.isoformat() and c == c}

    worker = start_worker(HOTSPOTS, "--partitions", str(PARTITIONS), "--schedule", str(schedule_path))
    worker.wait_ready()
    with PrometheusServer([f"127.0.0.1:{worker.metrics_port}"], workdir=tmp_path / "prom",
                          log_path=tmp_path / "prometheus.log") as prom:
        prom.wait_for('up{job="hotspot-dwell"}', lambda r: len(r) == 1 and r[0]["value"] == 1.0)
        asyncio.run(produce(broker.bootstrap, namespace["prefix"] + "location-fixes", records))
        asyncio.run(collect(broker.bootstrap, namespace["prefix"], lambda o: len(day_closed_rows(o)) >= len(mine)))

        # The control-room figures, once scraped, are the replay's.
        got = prom.wait_for("max by (hotspot_id) (hotspot_dwell_hotspot_patrols)",
                            lambda r: by_hotspot(r) == want["patrols"])
        assert len(got) == len(hs)
        presence = by_hotspot(prom.query("max by (hotspot_id) (hotspot_dwell_hotspot_presence_seconds)"))
        assert presence.keys() == want["presence_s"].keys()
        assert all(math.isclose(presence[h], want["presence_s"][h], abs_tol=1e-6) for h in presence)
        assert by_hotspot(prom.query("max by (hotspot_id) (hotspot_dwell_hotspot_met)")) == \
            {h: float(v) for h, v in want["met"].items()}
        assert by_hotspot(prom.query("max by (hotspot_id) (hotspot_dwell_hotspot_scheduled)")) == \
            {h: float(v) for h, v in want["scheduled"].items()}
        window = by_hotspot(prom.query("max by (hotspot_id) (hotspot_dwell_hotspot_window_presence_seconds)"))
        assert window.keys() == {h for h, s in want["scheduled"].items() if s}
        assert all(math.isclose(window[h], want["window_presence_s"][h], abs_tol=1e-6) for h in window)
        # Compliance through the recording rules, overall and per district.
        overall = prom.wait_for("hotspot_dwell:compliance:ratio", lambda r: len(r) == 1)[0]["value"]
        districts = prom.wait_for("district:hotspot_dwell_compliance:ratio", lambda r: len(r) > 1)
        got_compliance = {("all", overall)} | {(r["metric"]["district"], r["value"]) for r in districts}
        assert {(g, round(c, 9)) for g, c in got_compliance} == {(g, round(c, 9)) for g, c in want_compliance}

        # Every recording rule and every dashboard expression returns data.
        for record in recording_rules():
            prom.wait_for(record, lambda r: len(r) > 0, timeout_s=60)
        expressions = dashboard_expressions()
        assert len(expressions) >= 15
        for dashboard, title, expr in expressions:
            try:
                prom.wait_for(expr, lambda r: len(r) > 0, timeout_s=60)
            except Exception as exc:
                raise AssertionError(f"{dashboard} / {title}: {expr}: {exc}") from None
        assert set(CONTROL_ROOM_QUERIES.values()) <= {e for d, _, e in expressions if d == "control-room.json"}

        # A live scrape passes promtool's lint.
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5) as r:
            scrape = r.read()
        lint = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True)
        assert lint.returncode == 0 and not lint.stderr, lint.stderr.decode()
        # No officer id anywhere in the metrics.
        officer_ids = {k for k, _ in records if k.startswith(b"officer-")}
        assert len(officer_ids) == 6 and not any(i in scrape for i in officer_ids)

        # The control-room picture, from the same queries.
        picture = draw(snapshot(prom), hs, tmp_path / "control_room.png")
        assert picture.stat().st_size > 30_000
        if os.environ.get("HOTSPOT_DWELL_PICTURE"):
            shutil.copy(picture, os.environ["HOTSPOT_DWELL_PICTURE"])
    assert worker.stop() == 0
