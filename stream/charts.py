"""PNG charts of replay results: compliance by day, presence per hot spot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stream.tables import Table  # noqa: E402


def draw_compliance_by_day(compliance: Table, path: str | Path) -> Path:
    """Bars of met / scheduled hot spots per policing day (group ``all``)."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    if len(compliance):
        sel = compliance["group"] == "all"
        days = compliance["policing_day"][sel].tolist()
        scheduled = compliance["scheduled"][sel].astype(float)
        met = compliance["met"][sel].astype(float)
        x = np.arange(len(days))
        ax.bar(x, scheduled, color="#d0d7de", label="scheduled")
        ax.bar(x, met, color="#1f7a4d", label="met (target presence in window)")
        for xi, s, m in zip(x, scheduled, met):
            if s:
                ax.text(xi, s, f"{m / s:.0%}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, days, rotation=45 if len(days) > 7 else 0, ha="right" if len(days) > 7 else "center")
        ax.legend(loc="upper left", frameon=False)
    else:
        ax.text(0.5, 0.5, "no policing days", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("hot spots")
    return _save(fig, ax, "Scheduled hot spots and patrols met, by policing day", path)


def draw_presence_per_hotspot(hotspot_days: Table, path: str | Path, top: int = 40) -> Path:
    """Total presence minutes per hot spot, split into scheduled and unscheduled days."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    if len(hotspot_days):
        ids = hotspot_days["hotspot_id"]
        minutes = hotspot_days["presence_s"].astype(float) / 60.0
        sched = hotspot_days["scheduled"]
        names, inverse = np.unique(ids.astype(str), return_inverse=True)
        on = np.bincount(inverse, weights=np.where(sched, minutes, 0), minlength=len(names))
        off = np.bincount(inverse, weights=np.where(sched, 0, minutes), minlength=len(names))
        order = np.argsort(-(on + off), kind="stable")[:top]
        y = np.arange(len(order))
        ax.barh(y, on[order], color="#1f7a4d", label="scheduled days")
        ax.barh(y, off[order], left=on[order], color="#e3a21a", label="unscheduled days")
        ax.set_yticks(y, names[order], fontsize=7)
        ax.invert_yaxis()
        ax.legend(loc="lower right", frameon=False)
    ax.set_xlabel("presence (patrol-minutes)")
    return _save(fig, ax, "Presence per hot spot", path)


def _save(fig, ax, title: str, path: Path) -> Path:
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
