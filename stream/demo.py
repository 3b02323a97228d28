"""The replay demo: a simulated policing day over the shipped Nottingham hot spots.

Until the streaming demo lands this is the README's main command: draw the
day's schedule, simulate the officers, replay their fixes and print the
compliance table with the paths of the charts.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

from geo.hotspots import load_hotspots
from stream.cli import _print_compliance
from stream.replay import replay, write_outputs
from stream.schedule import draw_schedule
from stream.simulate import SimulationSettings, simulate_day, write_fixes_csv

DEMO_DAY = dt.date(2024, 3, 30)  # the Saturday before the spring clock change


def demo_hotspots_path() -> Path:
    return Path(str(resources.files("geo") / "data" / "nottingham_hotspots.geojson"))


def run_replay_demo(out: Path, *, officers: int = 8, seed: int = 7) -> int:
    out.mkdir(parents=True, exist_ok=True)
    hs = load_hotspots(demo_hotspots_path())
    schedule = draw_schedule(hs.ids, first_day=DEMO_DAY, days=1, share=0.5, seed=seed, groups=hs.groups,
                             window_start="14:00", window_end="00:00", target_minutes=15)
    schedule.write_csv(out / "schedule.csv")
    sim = simulate_day(hs, schedule, DEMO_DAY, SimulationSettings(officers=officers, seed=seed))
    fixes_path = out / "fixes.csv"
    write_fixes_csv(sim, str(fixes_path))
    print(f"simulated {len(sim):,} fixes of {officers} officers on policing day {DEMO_DAY} "
          f"over {len(hs)} Nottingham hot spots ({len(schedule)} scheduled)")
    result = replay(fixes_path, hs, schedule)
    written = write_outputs(result, out)
    s = result.stats
    print(f"replayed in {s.seconds:.2f} s: {len(result.visits)} visits, {len(result.patrols)} patrols, "
          f"{s.fixes_rejected} fixes rejected")
    print()
    _print_compliance(result.compliance)
    print()
    for p in written:
        print(f"wrote {p}")
    return 0
