"""Grafana dashboards (deploy/grafana/dashboards.py) and their provisioning files.

The JSON under deploy/grafana/dashboards is generated; these tests keep it equal
to its Python source, check it with the SDK's model (current React panel types
only, every query literal PromQL on the provisioned datasource), and check the
provisioning YAML against the dashboards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("grafana_foundation_sdk")

from grafana_foundation_sdk.cog.plugins import register_default_plugins  # noqa: E402
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel  # noqa: E402
from grafana_foundation_sdk.models.dashboard import RowPanel  # noqa: E402
from grafana_foundation_sdk.models.prometheus import Dataquery as PromDataquery  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "deploy" / "grafana"
SCRIPT = GRAFANA / "dashboards.py"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES_YML = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS_YML = GRAFANA / "provisioning" / "dashboards" / "hotspot-dwell.yml"
COMPOSE = REPO / "deploy" / "docker-compose.yml"

ALLOWED_TYPES = {"stat", "table", "timeseries", "geomap", "bargauge", "gauge", "barchart", "piechart", "text",
                 "histogram", "heatmap", "state-timeline", "status-history", "row"}
# Angular (or long-removed) panels: disabled by default in Grafana 11, gone in 12.
DEPRECATED_TYPES = {"graph", "table-old", "singlestat", "grafana-worldmap-panel", "grafana-piechart-panel"}
UIDS = {"control-room.json": "hotspot-dwell-control-room", "engine.json": "hotspot-dwell-engine"}
DATASOURCE_UID = "prometheus"


def _load_script():
    # deploy/ is not a package: import the script from its path.
    spec = importlib.util.spec_from_file_location("hotspot_dwell_grafana_dashboards", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dashboards = _load_script()


@pytest.fixture(scope="module")
def built() -> dict[str, dict]:
    return dashboards.build_dashboards()


@pytest.fixture(scope="module")
def models() -> dict[str, DashboardModel]:
    # Without the plugins, options stay dicts and targets become UnknownDataquery.
    register_default_plugins()
    return {name: DashboardModel.from_json(json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8")))
            for name in UIDS}


def all_panels(model: DashboardModel) -> list:
    """Top-level panels and those inside (collapsed) rows."""
    out = []
    for p in model.panels or []:
        out.append(p)
        if isinstance(p, RowPanel):
            out.extend(p.panels or [])
    return out


def query_panels(model: DashboardModel) -> list:
    return [p for p in all_panels(model) if not isinstance(p, RowPanel)]


# -- source and JSON never drift ----------------------------------------------------------

def test_committed_json_is_what_the_script_generates(built):
    assert set(built) == set(UIDS)
    on_disk = {p.name for p in DASHBOARD_DIR.glob("*.json")}
    assert on_disk == set(UIDS), "stray or missing dashboard JSON; run deploy/grafana/dashboards.py"
    for name, dashboard_json in built.items():
        committed = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert committed == dashboards.render(dashboard_json), (
            f"{name} is stale: run .venv/bin/python deploy/grafana/dashboards.py and commit the JSON")
        assert committed.endswith("}\n")


def test_dashboard_identity(built):
    for name, d in built.items():
        assert d["uid"] == UIDS[name]
        assert "id" not in d and "__inputs" not in d and "__requires" not in d
        assert d["refresh"] == "10s"
        assert d["time"] == {"from": "now-24h", "to": "now"}
        assert d.get("templating", {}).get("list", []) == []


# -- panel types ------------------------------------------------------------------------------

def test_panels_load_and_use_current_types_only(models):
    for name, model in models.items():
        assert model.uid == UIDS[name]
        panels = all_panels(model)
        assert query_panels(model), f"{name} has no panels"
        for p in panels:
            assert p.type_val in ALLOWED_TYPES, f"{name}: {p.title!r} is a {p.type_val!r} panel"
            assert p.type_val not in DEPRECATED_TYPES
        ids = [p.id_val for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: panel ids must be unique"


def test_control_room_has_stat_table_timeseries_and_geomap(models):
    types = {p.type_val for p in query_panels(models["control-room.json"])}
    assert {"stat", "table", "timeseries", "geomap"} <= types


# -- queries ----------------------------------------------------------------------------------

def test_every_target_is_literal_promql_on_the_provisioned_datasource(models):
    for name, model in models.items():
        for p in query_panels(model):
            assert p.datasource is not None and p.datasource.uid == DATASOURCE_UID, f"{name}: {p.title!r}"
            assert p.datasource.type_val == "prometheus"
            assert p.targets, f"{name}: {p.title!r} has no targets"
            for t in p.targets:
                assert isinstance(t, PromDataquery), f"{name}: {p.title!r}: {type(t).__name__}"
                assert t.expr.strip(), f"{name}: {p.title!r} has an empty expr"
                assert t.datasource is not None and t.datasource.uid == DATASOURCE_UID
                assert t.datasource.type_val == "prometheus"
                # Run verbatim against Prometheus: no $variables, no $__rate_interval.
                assert "$" not in t.expr, f"{name}: {p.title!r}: {t.expr}"
            refs = [t.ref_id for t in p.targets]
            assert all(refs) and len(refs) == len(set(refs)), f"{name}: {p.title!r}: refIds {refs}"


def test_table_columns_refer_to_existing_queries(built):
    # organize names value columns "Value #<refId>"; a renamed or dropped query would
    # leave a column silently empty.
    for name, d in built.items():
        for p in d["panels"]:
            refs = {t["refId"] for t in p.get("targets", [])}
            for tr in p.get("transformations", []):
                if tr["id"] != "organize":
                    continue
                for key in tr["options"].get("renameByName", {}):
                    m = re.fullmatch(r"Value #(\w+)", key)
                    if m:
                        assert m.group(1) in refs, f"{name}: {p['title']!r}: {key}"


def test_dashboard_queries_covers_every_target(built):
    for d in built.values():
        queries = dashboards.dashboard_queries(d)
        n_targets = sum(len(q.get("targets", [])) for p in d["panels"] for q in [p, *p.get("panels", [])])
        assert len(queries) == n_targets > 0
        assert all(title and expr for title, expr in queries)
    nested = {"panels": [{"type": "row", "title": "r", "panels": [
        {"type": "stat", "title": "inner", "targets": [{"expr": "up"}]}]}]}
    assert dashboards.dashboard_queries(nested) == [("inner", "up")]


def test_expressions_parse_with_promtool(built, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        # As in tests/test_metrics.py: a skip locally, a failure under .ci/run.
        if os.environ.get("HOTSPOT_DWELL_CI"):
            pytest.fail("promtool is missing but .ci/run should have installed Debian's prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    exprs = sorted({expr for d in built.values() for _, expr in dashboards.dashboard_queries(d)})
    # Each expression as a recording rule: `promtool check rules` parses them all.
    lines = ["groups:", "  - name: dashboard_queries", "    rules:"]
    for i, expr in enumerate(exprs):
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {_yaml_string(expr)}"]
    rules = tmp_path / "dashboard_queries.yml"
    rules.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def _yaml_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# -- provisioning -----------------------------------------------------------------------------

def test_datasource_provisioning_matches_the_dashboards(built):
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(DATASOURCES_YML.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    [ds] = doc["datasources"]
    assert ds["name"] == "Prometheus"
    assert ds["uid"] == DATASOURCE_UID
    assert ds["type"] == "prometheus"
    assert ds["access"] == "proxy"
    assert ds["url"] == "http://prometheus:9090"
    assert ds["isDefault"] is True
    assert ds["jsonData"]["httpMethod"] == "POST"
    assert ds["jsonData"]["timeInterval"] == "10s"
    used = {(t["datasource"]["type"], t["datasource"]["uid"])
            for d in built.values() for p in d["panels"] for q in [p, *p.get("panels", [])]
            for t in [q, *q.get("targets", [])] if "datasource" in t}
    assert used == {(ds["type"], ds["uid"])}


def test_dashboard_provider_points_at_the_mounted_dashboards():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(PROVIDERS_YML.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    [provider] = doc["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Hotspot dwell"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    if not COMPOSE.exists():
        return
    # Once the compose file exists, it must mount deploy/grafana/dashboards there.
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    mounts = set()
    for service in (compose.get("services") or {}).values():
        for vol in service.get("volumes") or []:
            if isinstance(vol, str) and ":" in vol:
                src, dst = vol.split(":")[:2]
            elif isinstance(vol, dict):
                src, dst = vol.get("source", ""), vol.get("target", "")
            else:
                continue
            mounts.add(((COMPOSE.parent / src).resolve(), dst.rstrip("/")))
    assert (DASHBOARD_DIR.resolve(), provider["options"]["path"]) in mounts, (
        "deploy/docker-compose.yml must mount deploy/grafana/dashboards at the provider's path")
