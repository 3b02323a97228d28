"""The figure and the table of the accuracy grid (benchmarks/accuracy_grid.py), from its result dict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from benchmarks.accuracy_grid import ERRORS_M, INTERVALS_S, cell_name

# Defaults worth naming in the figure's title (others are in the JSON); missing ones are skipped.
_TITLE_DEFAULTS = ("scaling", "exit_margin_m", "exit_grace_s", "max_gap_s", "max_gap_intervals",
                   "exit_grace_intervals", "max_exit_grace_s", "exit_margin_accuracies", "stay_min_fixes",
                   "stay_radius_accuracies", "walking_speed_mps")


def pct(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def setting_str(entry: dict) -> str:
    s = entry["setting"]
    return f"{s['exit_margin_m']:g}/{s['exit_grace_s']:g}/{s['max_gap_s']:g}"


def _grid(records: dict, value) -> np.ndarray:
    """(error, interval) array of value(record); NaN for cells not run."""
    out = np.full((len(ERRORS_M), len(INTERVALS_S)), np.nan)
    for y, err in enumerate(ERRORS_M):
        for x, iv in enumerate(INTERVALS_S):
            rec = records.get(cell_name(iv, err))
            if rec is not None:
                out[y, x] = value(rec)
    return out


def draw(result: dict, path: Path) -> None:
    """Heat maps over interval x error: adaptive recall, best fixed recall, their difference, adaptive false
    share, adaptive minus the Pareto best; the mixed fleet in a text panel; target cells outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    records = result["records"]
    cap = result["settings"]["false_share_cap"]
    adaptive_recall = _grid(records, lambda r: 100 * r["adaptive"]["recall"])
    best_recall = _grid(records, lambda r: 100 * r["best_fixed"]["recall"])
    panels = [
        ("(a) adaptive defaults: recall %", adaptive_recall, "viridis", None, "{:.1f}"),
        (f"(b) best fixed setting, false <= {100 * cap:g}%: recall %", best_recall, "viridis", None, "{:.1f}"),
        ("(c) adaptive - best fixed (points)", adaptive_recall - best_recall, "RdBu", "diverging", "{:+.1f}"),
        ("(d) adaptive defaults: false patrols %", _grid(records, lambda r: 100 * r["adaptive"]["false_share"]),
         "Reds", None, "{:.1f}"),
        (f"(e) adaptive - best fixed with false <= max(adaptive's, {100 * cap:g}%) (points)",
         _grid(records, lambda r: 0.0 - r["pareto"]["shortfall_pt"]), "RdBu", "diverging", "{:+.1f}"),
    ]
    lo = np.nanmin(np.r_[adaptive_recall.ravel(), best_recall.ravel(), [100.0]])
    fig, axes = plt.subplots(2, 3, figsize=(18, 10.5))
    for ax, (title, grid, cmap, kind, fmt) in zip(axes.ravel(), panels):
        if kind == "diverging":
            lim = max(1.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
            im = ax.imshow(grid, cmap=cmap, vmin=-lim, vmax=lim, origin="lower", aspect="auto")
        elif "recall" in title:
            im = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=100.0, origin="lower", aspect="auto")
        else:
            im = ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=max(2 * 100 * cap, float(np.nanmax(grid, initial=0))),
                           origin="lower", aspect="auto")
        for (y, x), v in np.ndenumerate(grid):
            if not np.isfinite(v):
                continue
            r, g, b, _ = im.cmap(im.norm(v))
            label = fmt.format(v)
            if title.startswith("(b)"):  # which setting, margin/grace/gap
                label += "\n" + setting_str(records[cell_name(INTERVALS_S[x], ERRORS_M[y])]["best_fixed"])
            ax.text(x, y, label, ha="center", va="center", fontsize=9,
                    color="k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w")
        for cell, rec in records.items():
            if "target" not in rec:
                continue
            part = result["cells"][cell][0]  # a uniform cell: one part
            x, y = INTERVALS_S.index(part["interval_s"]), ERRORS_M.index(part["error_m"])
            ax.add_patch(Rectangle((x - 0.46, y - 0.46), 0.92, 0.92, fill=False, lw=2.5,
                                   edgecolor="tab:green" if rec["target"]["met"] else "tab:red"))
        ax.set_xticks(range(len(INTERVALS_S)), [f"{v:.0f}" for v in INTERVALS_S])
        ax.set_yticks(range(len(ERRORS_M)), [f"{v:.0f}" for v in ERRORS_M])
        ax.set_xlabel("reporting interval (s)")
        ax.set_ylabel("error, 1 sigma (m)")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax)
    ax = axes.ravel()[-1]
    ax.axis("off")
    ax.text(0.0, 1.0, mixed_text(result), va="top", ha="left", family="monospace", fontsize=9,
            transform=ax.transAxes)
    s = result["settings"]
    defaults = ", ".join(f"{k}={result['defaults'][k]:g}" if isinstance(result["defaults"][k], float)
                         else f"{k}={result['defaults'][k]}" for k in _TITLE_DEFAULTS if k in result["defaults"])
    fig.suptitle(f"Adaptive defaults vs the best fixed setting per radio condition; {s['days']} day(s) x "
                 f"{s['officers_per_day']} officers, {100 * s['drop_share']:g}% drops, recall of 16-min visits "
                 f"within 2 intervals\ndefaults: {defaults}\noutlined: target cells (green met, red not; "
                 f"recall target and false <= {100 * cap:g}%)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mixed_text(result: dict) -> str:
    rec = result["records"].get("mixed")
    if rec is None:
        return "mixed fleet: not run"
    parts = result["cells"]["mixed"]
    a, b = rec["adaptive"], rec["best_fixed"]
    lines = ["(f) mixed fleet: " + " + ".join(f"{p['name']}s {p['interval_s']:g} s / {p['error_m']:g} m"
                                              for p in parts),
             f"{rec['n_true_long']} long true visits", "",
             f"adaptive          recall {pct(a['recall'])}%  false {pct(a['false_share'])}%",
             f"best fixed {setting_str(b):>9}  recall {pct(b['recall'])}%  false {pct(b['false_share'])}%",
             (f"adaptive - best fixed: {0.0 - rec['shortfall_pt']:+.2f} pt "
              f"(within 1 pt: {'yes' if rec['within_one_point'] else 'NO'})"),
             (f"Pareto (false <= {pct(rec['pareto']['false_cap'])}%): best {setting_str(rec['pareto'])} "
              f"{pct(rec['pareto']['recall'])}%, adaptive {0.0 - rec['pareto']['shortfall_pt']:+.2f} pt"), ""]
    for name, half in rec.get("parts", {}).items():
        lines.append(f"{name:>5} half: adaptive {pct(half['adaptive']['recall'])}% / "
                     f"{pct(half['adaptive']['false_share'])}%, best fixed {pct(half['best_fixed']['recall'])}% / "
                     f"{pct(half['best_fixed']['false_share'])}%")
    lines += ["", "setting = margin m / grace s / gap s;", "each half scored with its own interval"]
    return "\n".join(lines)


def print_table(result: dict) -> None:
    """One line per cell: adaptive, the best fixed setting, the shortfalls and the target."""
    print(f"{'cell':>9} {'long':>5} {'adaptive':>8} {'false':>6} {'best fixed':>12} {'recall':>7} {'false':>6} "
          f"{'short':>6} {'1pt':>3} {'pareto':>6}  target")
    print(f"{'':>9} {'':>5} {'recall%':>8} {'%':>6} {'m/g/gap':>12} {'%':>7} {'%':>6} {'pt':>6} {'':>3} "
          f"{'pt':>6}")
    for cell, rec in result["records"].items():
        a, b = rec["adaptive"], rec["best_fixed"]
        target = ""
        if "target" in rec:
            t = rec["target"]
            target = (f">= {100 * t['min_recall']:g}%: " + ("met" if t["met"] else "NOT met")
                      + ("" if t["false_met"] else " (false > cap)"))
        print(f"{cell:>9} {rec['n_true_long']:5d} {pct(a['recall']):>8} {pct(a['false_share']):>6} "
              f"{setting_str(b) + ('' if b['cap_met'] else '*'):>12} {pct(b['recall']):>7} "
              f"{pct(b['false_share']):>6} {rec['shortfall_pt']:+6.2f} {'yes' if rec['within_one_point'] else 'NO':>3} "
              f"{rec['pareto']['shortfall_pt']:+6.2f}  {target}")
    print("short = best fixed recall - adaptive recall; pareto = the same against the best fixed setting whose false "
          "share is <= max(adaptive's, the cap); * = no fixed setting under the cap (lowest false share used)")
