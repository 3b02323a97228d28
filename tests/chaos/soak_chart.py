"""The soak's chart: memory, lag and latency against time, the policing days marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIB = 1 << 20


def draw(result: dict, path: Path) -> Path:
    """Memory, lag and latency against time, the policing days marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, summary, days, settings = result["samples"], result["summary"], result["days"], result["settings"]
    minutes = np.array([s["t_s"] for s in samples]) / 60.0

    def col(name, scale=1.0):
        return np.array([np.nan if s[name] is None else s[name] * scale for s in samples], float)

    def legend(ax, twin, loc):
        ax.legend(handles=ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0], loc=loc)

    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True, constrained_layout=True)
    mem, broker_ax, lag_ax, lat_ax = axes
    mem.plot(minutes, col("worker_rss_bytes", 1 / MIB), color="C0", label="worker RSS")
    ref, window = summary["rss_at_mark_bytes"] / MIB, (summary["last_window_from_s"] / 60, minutes.max())
    mem.axvline(summary["mark_s"] / 60, color="C0", ls=":", lw=1)
    mem.hlines(ref, *window, colors="C0", lw=1, label=f"RSS at the mark ({ref:,.0f} MiB)")
    mem.hlines(ref * (1 + settings["memory_tolerance"]), *window, colors="C3", linestyles="--", lw=1,
               label="allowed max over the last window")
    mem.set(ylabel="MiB", ylim=(0, ref * 1.4), title=f"Worker memory: max over the last window / at the mark = "
            f"{summary['rss_ratio']:.3f} ({'flat' if summary['memory_flat'] else 'NOT flat'})")
    state = mem.twinx()
    state.plot(minutes, col("state_bytes", 1 / MIB), color="C2", label="stage-1 state (right)")
    state.set(ylabel="stage-1 state, MiB", ylim=(0, None))
    legend(mem, state, "lower right")
    broker_ax.plot(minutes, col("broker_rss_bytes", 1 / MIB), color="C7")
    broker_ax.set(ylabel="MiB", title="Embedded broker RSS (memory-only storage keeps every record; for information)")
    lag_ax.plot(minutes, col("lag_fixes"), color="C1", label="lag (fixes offered - read)")
    lag_ax.axhline(summary["lag_bound_fixes"], color="C3", ls="--", lw=1, label="bound")
    lag_ax.set_yscale("symlog", linthresh=100)
    lag_ax.set_ylim(bottom=0)
    lag_ax.set(ylabel="fixes", title=f"Lag: max {summary['lag_max_fixes']:,} fixes, at the end "
               f"{summary['lag_end_fixes']:,}; achieved {summary['achieved_rate']:,.0f} fixes/s")
    rate = lag_ax.twinx()
    rate.plot(minutes, col("offered_per_s"), color="C4", lw=1, label="offered fixes/s (right)")
    rate.set(ylabel="fixes/s", ylim=(0, settings["rate"] * 1.3))
    legend(lag_ax, rate, "upper left")
    for name, label in (("latency_p50_s", "fix latency p50"), ("latency_p99_s", "fix latency p99"),
                        ("loop_lag_p99_s", "event-loop lag p99")):
        lat_ax.plot(minutes, col(name, 1000.0), label=label)
    lat_ax.set_yscale("log")
    lat_ax.set(ylabel="ms (per 10 s window)", xlabel="minutes",
               title="Latency from the worker's histograms (bucket deltas, interpolated)")
    lat_ax.legend(loc="upper left")
    for d in days:
        mem.annotate(d["day"][5:], (d["input_from_s"] / 60, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                     color="grey", va="top")
        for ax in axes:
            ax.axvline(d["input_from_s"] / 60, color="grey", ls=":", lw=0.8)
            if d["closed_at_s"] is not None:
                ax.axvline(d["closed_at_s"] / 60, color="C3", lw=0.6, alpha=0.6)
    fig.suptitle(f"Soak: {settings['minutes']:g} min at {settings['rate']:,.0f} fixes/s, {result['load']['officers']} "
                 f"officers, {result['load']['hotspots']} hot spots; dotted: a policing day's input begins, red: its "
                 f"hotspot.day_closed ({summary['days_closed']} of {summary['days_close_due']} due)", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
