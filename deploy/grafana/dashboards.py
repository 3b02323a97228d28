#!/usr/bin/env python3
"""Grafana dashboards of hotspot-dwell, kept as Python and generated to JSON.

After editing, run ``.venv/bin/python deploy/grafana/dashboards.py``: it rewrites
``deploy/grafana/dashboards/*.json``, which Grafana loads through
``deploy/grafana/provisioning/dashboards/hotspot-dwell.yml``. Commit both;
tests/test_dashboards.py fails when they drift apart.

Built with ``grafana-foundation-sdk==1769699379!11.6.0`` (the Grafana 11.6 build;
an unpinned install resolves to the 10.1 build). Only React panel types.

Every expression is literal PromQL valid for Prometheus 2.42: no template
variables and no ``$__rate_interval``, so tests can run each one verbatim
against a real Prometheus (see :func:`dashboard_queries`).
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, geomap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders.dashboard import Dashboard, FieldColor, Row, ThresholdsConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery as PromQuery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (BarGaugeDisplayMode, BigValueColorMode, BigValueGraphMode,
                                                  BigValueTextMode, FrameGeometrySourceMode, LegendDisplayMode,
                                                  LegendPlacement, StackingMode, TableCellDisplayMode,
                                                  TableCellHeight, VizOrientation)
from grafana_foundation_sdk.models.dashboard import (DashboardCursorSync, DataSourceRef, DataTransformerConfig,
                                                     DynamicConfigValue, FieldColorModeId, Threshold, ThresholdsMode,
                                                     ValueMap, ValueMappingResult)
from grafana_foundation_sdk.models.geomap import TooltipMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
# Must match the uid in provisioning/datasources/prometheus.yml. Referenced by
# uid, not as an ``__inputs`` placeholder: file provisioning does not resolve those.
DS = DataSourceRef(type_val="prometheus", uid="prometheus")
TAGS = ["hotspot-dwell"]
REFRESH = "10s"  # = the scrape interval; the control room follows the day minute by minute
TIME_FROM, TIME_TO = "now-24h", "now"
# Hex, not a colour name: both the table and the map's OpenLayers style accept it.
GREY = "#8e8e8e"
# Hot-spot status code of hotspot_id:hotspot_dwell_status:code -> (text, colour).
STATUS = {0: ("not scheduled", GREY), 1: ("waiting", "orange"), 2: ("met", "green")}
PER_S = "suffix:/s"  # rates are events per second; the legend says which events
REFS = "ABCDEFGHIJ"


# -- small helpers ------------------------------------------------------------------------

def q(expr: str, legend: str | None = None, *, instant: bool = False, as_table: bool = False) -> PromQuery:
    """A Prometheus target on the provisioned datasource (the refId is set by :func:`panel`)."""
    b = PromQuery().expr(expr).datasource(DS)
    if legend is not None:
        b.legend_format(legend)
    if as_table:
        b.format(PromQueryFormat.TABLE)
    if instant:
        b.instant()
    return b


def panel(builder, title: str, targets: list[PromQuery], *, w: int, h: int, unit: str | None = None,
          description: str | None = None):
    """Title, size, datasource and targets with fixed refIds A, B, ...

    Fixed refIds matter: a table with several queries names its value columns
    "Value #A", "Value #B"..., which the organize transformation refers to.
    """
    if len(targets) > len(REFS):
        raise ValueError(f"{title}: more than {len(REFS)} queries")
    builder.title(title).datasource(DS).span(w).height(h)
    for ref, target in zip(REFS, targets, strict=False):  # checked above
        builder.with_target(target.ref_id(ref))
    if unit is not None:
        builder.unit(unit)
    if description is not None:
        builder.description(description)
    return builder


def steps(*pairs: tuple[float | None, str]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(value=v, color=c) for v, c in pairs])


def value_mappings(mapping: dict[int, tuple[str, str]]) -> list[ValueMap]:
    return [ValueMap(options={str(v): ValueMappingResult(text=t, color=c, index=i)
                              for i, (v, (t, c)) in enumerate(sorted(mapping.items()))})]


def stat_panel(title: str, expr: str, *, w: int, unit: str = "none", thresholds: ThresholdsConfig | None = None,
               legend: str | None = None, mappings: list[ValueMap] | None = None, description: str | None = None):
    b = (panel(stat.Panel(), title, [q(expr, legend)], w=w, h=4, unit=unit, description=description)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
         .color_mode(BigValueColorMode.BACKGROUND).graph_mode(BigValueGraphMode.NONE)
         .text_mode(BigValueTextMode.VALUE_AND_NAME if legend else BigValueTextMode.VALUE)
         .thresholds(thresholds or steps((None, "blue"))).no_value("0"))
    if unit == "none":
        b.decimals(0)
    if mappings:
        b.mappings(mappings)
    return b


def series_panel(title: str, targets: list[PromQuery], *, w: int, h: int = 8, unit: str = "short",
                 stacked: bool = False, description: str | None = None):
    b = (panel(timeseries.Panel(), title, targets, w=w, h=h, unit=unit, description=description)
         .min(0).fill_opacity(10).line_width(1)
         .legend(cb.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST)
                 .placement(LegendPlacement.BOTTOM)))
    if stacked:
        b.stacking(cb.StackingConfig().mode(StackingMode.NORMAL))
    return b


def organize(order: list[str], rename: dict[str, str], exclude: list[str]) -> DataTransformerConfig:
    return DataTransformerConfig(id_val="organize", options={
        "excludeByName": {name: True for name in exclude},
        "indexByName": {name: i for i, name in enumerate(order)},
        "renameByName": rename,
    })


def finish(dashboard: Dashboard) -> dict:
    """Build, number the panels (ids must be unique per dashboard) and return plain JSON."""
    model = dashboard.build()
    next_id = 1
    for p in model.panels or []:
        p.id_val = next_id
        next_id += 1
        for inner in getattr(p, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1
    return json.loads(JSONEncoder(sort_keys=True).encode(model))


def new_dashboard(title: str, uid: str, description: str) -> Dashboard:
    return (Dashboard(title).uid(uid).description(description).tags(TAGS).refresh(REFRESH)
            .time(TIME_FROM, TIME_TO).timezone("browser")
            # Explicit empty lists rather than bare {}: Grafana adds its built-in
            # annotation query on load. No variables: expressions stay literal.
            .annotations([]).variables([]))


# -- control room ---------------------------------------------------------------------------

# The table's queries: one instant table query per column, merged on hotspot_id
# (the only label besides Time that all of them share). Per-hot-spot gauges use
# max by (hotspot_id), like the recording rules: during a rebalance two workers
# may briefly both export a hot spot. Officers present are per worker partial
# counts, so they are summed. Durations are whole minutes as plain numbers (the
# "m" unit would switch to hours past 60, under a "(min)" header).
TABLE_COLUMNS: list[tuple[str, str]] = [  # (column, expr)
    ("Status", "hotspot_id:hotspot_dwell_status:code"),
    ("Presence (min)", "max by (hotspot_id) (hotspot_dwell_hotspot_presence_seconds) / 60"),
    ("Window presence (min)", "max by (hotspot_id) (hotspot_dwell_hotspot_window_presence_seconds) / 60"),
    ("Target (min)", "max by (hotspot_id) (hotspot_dwell_hotspot_target_seconds) / 60"),
    ("Patrols", "max by (hotspot_id) (hotspot_dwell_hotspot_patrols)"),
    ("Officers present", "sum by (hotspot_id) (hotspot_dwell_officers_present)"),
    ("Minutes left in window", "hotspot_id:hotspot_dwell_window_remaining:seconds / 60"),
]


def hotspot_table():
    values = [f"Value #{ref}" for ref in REFS[:len(TABLE_COLUMNS)]]
    b = (panel(table.Panel(), "Today's hot spots", [q(e, instant=True, as_table=True) for _, e in TABLE_COLUMNS],
               w=14, h=12, unit="none", description="One row per hot spot, for the current policing day.")
         .decimals(0)
         # merge joins the per-query tables into one row per hot spot; organize
         # hides the join keys and map coordinates and names the columns.
         .with_transformation(DataTransformerConfig(id_val="merge", options={}))
         .with_transformation(organize(
             ["name", "district", *values],
             {"name": "Hot spot", "district": "District",
              **{v: col for v, (col, _) in zip(values, TABLE_COLUMNS, strict=True)}},
             ["Time", "__name__", "hotspot_id", "lat", "lon"]))
         .show_header(True).cell_height(TableCellHeight.SM))
    # The override matches the renamed column: status codes become words on a coloured cell.
    return b.override_by_name("Status", [
        DynamicConfigValue(id_val="mappings", value=value_mappings(STATUS)),
        DynamicConfigValue(id_val="custom.cellOptions", value={"type": TableCellDisplayMode.COLOR_BACKGROUND}),
    ])


def hotspot_map():
    # The status series carries lat/lon as label strings; convertFieldType makes
    # them numbers before the markers layer reads them as coordinates.
    markers = (cb.MapLayerOptions().type("markers").name("Hot spots").tooltip(True)
               .location(cb.FrameGeometrySource().mode(FrameGeometrySourceMode.COORDS)
                         .latitude("lat").longitude("lon"))
               .config({"showLegend": True, "style": {
                   "color": {"field": "Value", "fixed": GREY},  # coloured by the status thresholds
                   "opacity": 0.8,
                   "size": {"fixed": 10, "max": 15, "min": 2},
                   "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                   "text": {"field": "name", "fixed": "", "mode": "field"},
                   "textConfig": {"fontSize": 10, "offsetX": 0, "offsetY": -12, "textAlign": "center",
                                  "textBaseline": "bottom"},
               }}))
    return (panel(geomap.Panel(), "Hot spots by status",
                  [q("hotspot_id:hotspot_dwell_status:code", instant=True, as_table=True)], w=10, h=12,
                  description="Grey: not scheduled today; orange: scheduled, waiting; green: met.")
            .with_transformation(DataTransformerConfig(id_val="convertFieldType", options={
                "conversions": [{"targetField": "lat", "destinationType": "number"},
                                {"targetField": "lon", "destinationType": "number"}],
                "fields": {}}))
            .view(geomap.MapViewConfig().id("coords").lat(52.95).lon(-1.15).zoom(12))  # Nottingham
            .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_attribution(True))
            .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
            .layers([markers])
            .tooltip(geomap.TooltipOptions().mode(TooltipMode.DETAILS))
            .color_scheme(FieldColor().mode(FieldColorModeId.THRESHOLDS))
            .thresholds(steps((None, GREY), (1, "orange"), (2, "green")))
            .mappings(value_mappings(STATUS)))


def control_room() -> dict:
    compliance = steps((None, "red"), (0.6, "orange"), (0.9, "green"))
    d = (new_dashboard("Hotspot dwell: control room", "hotspot-dwell-control-room",
                       "Today's hot-spot patrols: who is where, which hot spots are met and which are waiting.")
         .with_row(Row("Today"))
         .with_panel(stat_panel("Compliance today", "hotspot_dwell:compliance:ratio", w=4, unit="percentunit",
                                thresholds=compliance, description="Met / scheduled hot spots today.")
                     .min(0).max(1).no_value("-"))
         .with_panel(stat_panel("Scheduled hot spots", "sum(hotspot_dwell_scheduled_hotspots)", w=5))
         .with_panel(stat_panel("Met", "sum(hotspot_dwell_met_hotspots)", w=5,
                                thresholds=steps((None, "green"))))
         .with_panel(stat_panel("Waiting", "sum(hotspot_dwell_scheduled_hotspots) - sum(hotspot_dwell_met_hotspots)",
                                w=5, thresholds=steps((None, "green"), (1, "orange")),
                                description="Scheduled hot spots whose dosage is not met yet."))
         .with_panel(stat_panel("Officers in hot spots now", "sum(hotspot_dwell_officers_present) or vector(0)",
                                w=5))
         .with_panel(hotspot_table())
         .with_panel(hotspot_map())
         .with_row(Row("Trends"))
         .with_panel(panel(bargauge.Panel(), "Compliance by district",
                           [q("district:hotspot_dwell_compliance:ratio", "{{district}}", instant=True)],
                           w=8, h=9, unit="percentunit")
                     .min(0).max(1).thresholds(compliance)
                     .display_mode(BarGaugeDisplayMode.GRADIENT).orientation(VizOrientation.HORIZONTAL)
                     .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
         .with_panel(series_panel("Presence minutes by hot spot (top 10)", [q(
             "topk(10, max by (hotspot_id) (hotspot_dwell_hotspot_presence_seconds)"
             " * on (hotspot_id) group_left (name) max by (hotspot_id, name) (hotspot_dwell_hotspot_info)) / 60",
             "{{name}}")], w=8, h=9, unit="m"))
         .with_panel(series_panel("Patrols completed", [q(
             "sum by (district) (increase(hotspot_dwell_patrols_completed_total[15m]))", "{{district}}")],
             w=8, h=9, stacked=True, description="Patrols completed in the previous 15 minutes, by district.")))
    return finish(d)


# -- engine ---------------------------------------------------------------------------------

def quantiles(metric: str, legend_prefix: str = "") -> list[PromQuery]:
    return [q(f"histogram_quantile({p}, sum by (le) (rate({metric}_bucket[5m])))", f"{legend_prefix}p{label}")
            for p, label in ((0.5, "50"), (0.9, "90"), (0.99, "99"))]


def engine() -> dict:
    up_down = {0: ("down", "red"), 1: ("up", "green")}
    ready = {0: ("not ready", "orange"), 1: ("ready", "green")}
    fast_path = {0: ("slow path", "orange"), 1: ("fast path", "green")}
    d = (new_dashboard("Hotspot dwell: engine", "hotspot-dwell-engine",
                       "Streaming engine health: workers (up, ready, fetch fast path), throughput, latency, "
                       "rejects and batches.")
         .tooltip(DashboardCursorSync.CROSSHAIR)  # lines up spikes across panels
         .with_row(Row("Workers"))
         .with_panel(stat_panel("Workers up", "job:hotspot_dwell_workers_up:count", w=3,
                                thresholds=steps((None, "red"), (1, "green"))))
         .with_panel(stat_panel("Up per instance", 'up{job="hotspot-dwell"}', w=5, legend="{{instance}}",
                                mappings=value_mappings(up_down), thresholds=steps((None, "red"), (1, "green"))))
         .with_panel(stat_panel("Ready per instance", "hotspot_dwell_ready", w=5, legend="{{instance}}",
                                mappings=value_mappings(ready), thresholds=steps((None, "orange"), (1, "green"))))
         .with_panel(stat_panel("Fetch fast path per instance", "hotspot_dwell_fetch_fast_path", w=5,
                                legend="{{instance}}", mappings=value_mappings(fast_path),
                                thresholds=steps((None, "orange"), (1, "green")),
                                description="Fast path: stage 1 reads fetched fixes as arrays (stream/raw_fetch.py "
                                "hooked into aiokafka's fetcher). Slow path: aiokafka could not be hooked and fixes "
                                "are decoded one record at a time, at about half the throughput; install the aiokafka "
                                "version pyproject.toml pins (alert HotspotDwellFetchSlowPath)."))
         .with_panel(panel(table.Panel(), "Build info", [q("hotspot_dwell_build_info", instant=True, as_table=True)],
                           w=6, h=4)
                     .with_transformation(organize(["instance", "version", "python"],
                                                   {"instance": "Instance", "version": "Version", "python": "Python"},
                                                   ["Time", "Value", "__name__", "job"])))
         .with_row(Row("Throughput and latency"))
         .with_panel(series_panel("Throughput", [
             q("job:hotspot_dwell_fixes_accepted:rate1m", "accepted fixes/s"),
             q("job:hotspot_dwell_ingest_records:rate1m", "ingest records/s")], w=8, unit=PER_S))
         .with_panel(series_panel("Fix latency", [
             q("job:hotspot_dwell_fix_latency_seconds:p50_5m", "p50"),
             q("job:hotspot_dwell_fix_latency_seconds:p99_5m", "p99")], w=8, unit="s",
             description="From a batch's oldest fix reaching Kafka to its dwell updates being sent."))
         .with_panel(series_panel("Event-time lag", [
             q("job:hotspot_dwell_event_time_lag_seconds:max", "max"),
             q("max by (instance) (hotspot_dwell_event_time_lag_seconds)", "{{instance}}")], w=8, unit="s",
             description="Wall clock minus the newest event time stage 1 has processed."))
         .with_row(Row("Rejects and dead letters"))
         .with_panel(series_panel("Rejected fixes by reason", [
             q("reason:hotspot_dwell_fixes_rejected:rate1m", "{{reason}}")], w=12, unit=PER_S, stacked=True))
         .with_panel(series_panel("Dead letters", [
             q("job:hotspot_dwell_dead_letters:rate5m", "all reasons"),
             q("sum by (reason) (rate(hotspot_dwell_dead_letters_total[5m]))", "{{reason}}")], w=12, unit=PER_S))
         .with_row(Row("Batches"))
         .with_panel(series_panel("Batch size (fixes)", quantiles("hotspot_dwell_batch_fixes"), w=8))
         .with_panel(series_panel("Batch duration", quantiles("hotspot_dwell_batch_duration_seconds"), w=8, unit="s"))
         .with_panel(series_panel("Stage 1 activity", [
             q("sum(rate(hotspot_dwell_batches_total[1m]))", "batches/s"),
             q("sum(rate(hotspot_dwell_ingest_batches_total[1m]))", "ingest batches/s"),
             q("sum(rate(hotspot_dwell_visits_sent_total[1m]))", "visits sent/s"),
             q("sum(rate(hotspot_dwell_checkpoints_total[5m]))", "checkpoints/s")], w=8, unit=PER_S))
         .with_panel(series_panel("Event loop lag (every stall delays every fix in flight)",
                                  quantiles("hotspot_dwell_event_loop_lag_seconds"), w=8, unit="s")))
    return finish(d)


# -- entry points ---------------------------------------------------------------------------

def build_dashboards() -> dict[str, dict]:
    """File name -> dashboard JSON (plain dicts, as written)."""
    return {"control-room.json": control_room(), "engine.json": engine()}


def render(dashboard_json: dict) -> str:
    """The committed text of a dashboard: sorted keys, 2-space indent, trailing newline."""
    return JSONEncoder(sort_keys=True, indent=2).encode(dashboard_json) + "\n"


def dashboard_queries(dashboard_json: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, panels inside rows included."""
    out: list[tuple[str, str]] = []
    for p in dashboard_json.get("panels", []):
        for inner in [p, *p.get("panels", [])]:
            out.extend((inner.get("title", ""), t.get("expr", "")) for t in inner.get("targets", []))
    return out


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, dashboard_json in build_dashboards().items():
        path = OUT_DIR / name
        path.write_text(render(dashboard_json), encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
