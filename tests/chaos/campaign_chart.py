"""The crash campaign drawn: progress over time, with every kill and the scaling marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen


def draw_campaign(report: dict, path: Path) -> Path:
    """Records produced and checkpointed, distinct visits published, and workers live and ready."""
    samples = report["samples"]
    t = [s["t_s"] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, height_ratios=[3, 1])
    top.plot(t, [s["produced"] for s in samples], label="records produced", color="0.5")
    top.plot(t, [s["checkpointed"] for s in samples], label="records checkpointed by stage 1 (committed)",
             color="tab:blue")
    top.set_ylabel("records")
    right = top.twinx()
    right.plot(t, [s["visits"] for s in samples], label="distinct visits closed (published)", color="tab:green")
    right.set_ylabel("visits")
    bottom.step(t, [s["live"] for s in samples], where="post", label="workers live", color="0.4")
    bottom.step(t, [s["ready"] for s in samples], where="post", label="workers ready", color="tab:blue")
    bottom.set_ylabel("workers")
    bottom.set_xlabel("seconds since the first worker started")
    marks = {"kill": ("tab:red", ":", "SIGKILL + restart"), "scale_up": ("tab:green", "-", "scale up"),
             "scale_down": ("tab:purple", "-", "scale down (SIGTERM)"),
             "exited": ("tab:orange", "-.", "exited on its own (restarted)"),
             "flow_end": ("black", "--", "last record")}
    for kind, (color, style, label) in marks.items():
        times = [e["t_s"] for e in report["events"] if e["kind"] == kind]
        for i, x in enumerate(times):
            for ax in (top, bottom):
                ax.axvline(x, color=color, linestyle=style, linewidth=0.9,
                           label=label if i == 0 and ax is top else None)
    lines, labels = top.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    top.legend(lines + more, labels + more_labels, loc="upper left", fontsize=8)
    bottom.legend(loc="lower right", fontsize=8)
    c = report
    top.set_title(f"Crash campaign: {c['fixes']:,} fixes, {c['kills']} kills, {c['differences']} differences "
                  f"after de-duplication by event id ({'passed' if c['passed'] else 'FAILED'})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
