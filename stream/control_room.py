"""A picture of the control-room dashboard, drawn from a live Prometheus.

Grafana cannot run on this machine, so the project draws what the
control-room dashboard shows with matplotlib, from the same PromQL the
dashboard runs (``CONTROL_ROOM_QUERIES``; tests/test_dashboards.py checks
that every one of them is in deploy/grafana/dashboards/control-room.json).
The map draws the hot spots' real polygons where Grafana's Geomap places a
marker at each centre.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from geo.hotspots import HotspotSet

CONTROL_ROOM_QUERIES = {
    "compliance": "hotspot_dwell:compliance:ratio",
    "scheduled": "sum(hotspot_dwell_scheduled_hotspots)",
    "met": "sum(hotspot_dwell_met_hotspots)",
    "present": "sum(hotspot_dwell_officers_present) or vector(0)",
    "status": "hotspot_id:hotspot_dwell_status:code",
    "district_compliance": "district:hotspot_dwell_compliance:ratio",
    "presence_min": "max by (hotspot_id) (hotspot_dwell_hotspot_presence_seconds) / 60",
    "window_presence_min": "max by (hotspot_id) (hotspot_dwell_hotspot_window_presence_seconds) / 60",
    "target_min": "max by (hotspot_id) (hotspot_dwell_hotspot_target_seconds) / 60",
    "patrols": "max by (hotspot_id) (hotspot_dwell_hotspot_patrols)",
    "patrols_over_time": "sum by (district) (increase(hotspot_dwell_patrols_completed_total[15m]))",
    "presence_over_time": "topk(10, max by (hotspot_id) (hotspot_dwell_hotspot_presence_seconds) * on (hotspot_id) "
                          "group_left (name) max by (hotspot_id, name) (hotspot_dwell_hotspot_info)) / 60",
}
STATUS_NAMES = {0: "not scheduled", 1: "waiting", 2: "met"}
STATUS_COLOURS = {0: "#c8c8c8", 1: "#ff9830", 2: "#56a64b"}


def snapshot(prom) -> dict:
    """Every control-room query, instant; the two time series over the last 30 minutes."""
    out = {}
    for name, expr in CONTROL_ROOM_QUERIES.items():
        if name.endswith("_over_time"):
            now = time.time()
            out[name] = prom.query_range(expr, now - 1800, now, 15)
        else:
            out[name] = prom.query(expr)
    return out


def _scalar(rows, default=float("nan")) -> float:
    return float(rows[0]["value"]) if rows else default


def _by_hotspot(rows) -> dict[str, float]:
    return {r["metric"]["hotspot_id"]: r["value"] for r in rows if "hotspot_id" in r["metric"]}


def draw(data: dict, hotspots: HotspotSet, path: str | Path, title: str = "Hot spot patrols: control room") -> Path:
    """Draw the control-room view of ``snapshot()`` data to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig = plt.figure(figsize=(17, 10.5))
    grid = fig.add_gridspec(3, 3, height_ratios=[0.32, 1.35, 1.0], hspace=0.38, wspace=0.22)
    fig.suptitle(title, fontsize=15, x=0.02, ha="left")

    # Stat row.
    compliance = _scalar(data["compliance"])
    scheduled, met = _scalar(data["scheduled"], 0), _scalar(data["met"], 0)
    stats = [("Compliance today", "-" if compliance != compliance else f"{compliance:.0%}"),
             ("Scheduled", f"{scheduled:.0f}"), ("Met", f"{met:.0f}"), ("Waiting", f"{scheduled - met:.0f}"),
             ("Officers in hot spots now", f"{_scalar(data['present'], 0):.0f}")]
    ax = fig.add_subplot(grid[0, :])
    ax.axis("off")
    for k, (label, value) in enumerate(stats):
        x = (k + 0.5) / len(stats)
        ax.text(x, 0.62, value, ha="center", va="center", fontsize=26, weight="bold",
                color="#56a64b" if label == "Met" else "#ff9830" if label == "Waiting" else "#1f60c4")
        ax.text(x, 0.08, label, ha="center", va="center", fontsize=11, color="#444")

    status = {r["metric"]["hotspot_id"]: int(r["value"]) for r in data["status"]}
    names = {r["metric"]["hotspot_id"]: r["metric"].get("name", "") for r in data["status"]}
    districts = {r["metric"]["hotspot_id"]: r["metric"].get("district", "") for r in data["status"]}

    # Map: the hot spots' polygons coloured by status.
    ax = fig.add_subplot(grid[1, 0])
    for i, geom in enumerate(hotspots.geometries_metric):
        colour = STATUS_COLOURS.get(status.get(hotspots.ids[i], 0))
        for poly in getattr(geom, "geoms", [geom]):
            x, y = poly.exterior.xy
            ax.fill(np.asarray(x) / 1000, np.asarray(y) / 1000, color=colour, ec="#555", lw=0.4)
    bounds = np.array([g.bounds for g in hotspots.geometries_metric]) / 1000
    pad = 0.3
    ax.set_xlim(bounds[:, 0].min() - pad, bounds[:, 2].max() + pad)
    ax.set_ylim(bounds[:, 1].min() - pad, bounds[:, 3].max() + pad)
    ax.set_aspect("equal")
    ax.set_title("Hot spots by status", loc="left")
    ax.set_xlabel("easting (km, EPSG:27700)")
    ax.set_ylabel("northing (km)")
    ax.legend(handles=[Patch(color=c, label=STATUS_NAMES[s]) for s, c in STATUS_COLOURS.items()], fontsize=8,
              loc="lower left")

    # Today's scheduled hot spots, waiting first.
    ax = fig.add_subplot(grid[1, 1:])
    ax.axis("off")
    presence, window = _by_hotspot(data["presence_min"]), _by_hotspot(data["window_presence_min"])
    target, patrols = _by_hotspot(data["target_min"]), _by_hotspot(data["patrols"])
    rows = sorted((h for h, s in status.items() if s > 0), key=lambda h: (status[h], names[h]))
    cells = [[names[h] or h, districts[h], STATUS_NAMES[status[h]], f"{presence.get(h, 0):.0f}",
              f"{window.get(h, 0):.0f}", f"{target.get(h, float('nan')):.0f}", f"{patrols.get(h, 0):.0f}"]
             for h in rows[:18]]
    if cells:
        table = ax.table(cellText=cells, colLabels=["hot spot", "district", "status", "presence min",
                                                    "in window min", "target min", "patrols"],
                         loc="upper center", cellLoc="left", colWidths=[0.3, 0.16, 0.12, 0.11, 0.12, 0.1, 0.09])
        table.auto_set_font_size(False)
        table.set_fontsize(8.5)
        table.scale(1, 1.22)
        for (r, c), cell in table.get_celld().items():
            if r > 0 and c == 2:
                cell.set_facecolor(STATUS_COLOURS[status[rows[r - 1]]])
    ax.set_title(f"Today's scheduled hot spots ({len(rows)}; first {len(cells)} shown)", loc="left")

    # Compliance by district.
    ax = fig.add_subplot(grid[2, 0])
    dist = sorted((r["metric"]["district"], r["value"]) for r in data["district_compliance"])
    if dist:
        ax.barh([d for d, _ in dist], [v * 100 for _, v in dist],
                color=["#56a64b" if v >= 0.8 else "#ff9830" for _, v in dist])
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of scheduled hot spots met")
    ax.set_title("Compliance by district", loc="left")
    ax.tick_params(axis="y", labelsize=7)

    for pos, key, label, ylabel in ((grid[2, 1], "presence_over_time", "Presence minutes, top 10 hot spots", "min"),
                                     (grid[2, 2], "patrols_over_time", "Patrols completed (15 min increase)",
                                      "patrols")):
        ax = fig.add_subplot(pos)
        for series in data[key]:
            t = np.asarray(series["t"])
            m = series["metric"]
            name = m.get("district") or m.get("name") or names.get(m.get("hotspot_id", ""), "")
            ax.plot((t - t.max()) / 60, series["v"], lw=1.2, label=name[:22])
        ax.set_title(label, loc="left")
        ax.set_xlabel("minutes before now")
        ax.set_ylabel(ylabel)
        if data[key]:
            ax.legend(fontsize=6, ncol=2)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
