"""The command line: every subcommand on real files, and errors that name the problem."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import geo
import kernels
import stream
from stream.cli import main

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "uk"


def test_packages_are_this_repository():
    # `kernels` is also an unrelated PyPI package: make sure we test ours.
    for pkg in (kernels, geo, stream):
        assert Path(pkg.__file__).resolve().is_relative_to(REPO), pkg.__file__


def test_hotspots_build_schedule_simulate_replay(tmp_path, capsys):
    hs = tmp_path / "hs.geojson"
    assert main(["hotspots", "build", "--crimes", str(DATA / "nottingham_burglary.csv.gz"), "--crimes",
                 str(DATA / "nottingham_robbery.csv.gz"), "--wards", str(DATA / "nottingham_wards.gpkg"),
                 "--top", "20", "--prefix", "T", "--out", str(hs)]) == 0
    features = json.loads(hs.read_text())["features"]
    assert len(features) == 20 and features[0]["id"] == "T-001"
    assert all(f["properties"]["group"] for f in features)

    sched = tmp_path / "schedule.csv"
    assert main(["schedule", "--hotspots", str(hs), "--start", "2024-03-04", "--days", "3", "--share", "0.5",
                 "--per-group", "--seed", "1", "--out", str(sched)]) == 0
    rows = list(csv.DictReader(open(sched)))
    assert {r["policing_day"] for r in rows} == {"2024-03-04", "2024-03-05", "2024-03-06"}

    fixes = tmp_path / "fixes.csv"
    assert main(["simulate", "--hotspots", str(hs), "--schedule", str(sched), "--day", "2024-03-04",
                 "--officers", "4", "--out", str(fixes)]) == 0
    out = tmp_path / "out"
    assert main(["replay", "--fixes", str(fixes), "--hotspots", str(hs), "--schedule", str(sched), "--out", str(out),
                 "--quiet", "--min-patrol-s", "600"]) == 0
    for name in ("visits", "patrols", "hotspot_days", "compliance", "rejected"):
        assert (out / f"{name}.csv").stat().st_size > 0
    assert (out / "compliance_by_day.png").read_bytes()[:4] == b"\x89PNG"
    patrols = list(csv.DictReader(open(out / "patrols.csv")))
    assert patrols and all(float(p["duration_s"]) >= 600 for p in patrols)
    printed = capsys.readouterr().out
    assert "fixes/s" in printed and "2024-03-04" in printed, printed


def test_bad_hotspot_file_fails_with_file_feature_and_problem(tmp_path, capsys):
    hs = tmp_path / "bad.geojson"
    hs.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "no id"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 50], [0.01, 50], [0.01, 50.01], [0, 50]]]}}]}))
    fixes = tmp_path / "f.csv"
    fixes.write_text("officer_id,ts,lat,lon\n")
    code = main(["replay", "--fixes", str(fixes), "--hotspots", str(hs), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.geojson" in err and "feature 0" in err and "id" in err


def test_bad_schedule_fails_with_file_line_and_problem(tmp_path, capsys):
    sched = tmp_path / "s.csv"
    sched.write_text("policing_day,hotspot_id,window_start,window_end,target_minutes\n2024-03-04,NOPE,14:00,00:00,15\n")
    fixes = tmp_path / "f.csv"
    fixes.write_text("officer_id,ts,lat,lon\n")
    code = main(["replay", "--fixes", str(fixes), "--hotspots", str(geo.NOTTINGHAM_HOTSPOTS_PATH), "--schedule",
                 str(sched), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "s.csv: line 2" in err and "'NOPE' is not in the hot spot file" in err


def test_replay_demo(tmp_path, capsys):
    assert main(["demo", "--replay", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "policing_day" in out and " all " in out
    assert (tmp_path / "demo" / "compliance.csv").exists()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


@pytest.mark.integration
def test_streaming_demo_runs_a_day_and_leaves_no_process(tmp_path):
    exe = Path(sys.executable).parent / "hotspot-dwell"
    if not exe.exists():
        pytest.skip("console script not installed (run through make)")
    out_dir = tmp_path / "demo"
    proc = subprocess.run([str(exe), "demo", "--out", str(out_dir), "--seconds", "8"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "worker ready in" in proc.stdout and " all " in proc.stdout and "policing day 2024-03-30 closed" in proc.stdout
    assert (out_dir / "compliance_by_day.png").read_bytes()[:4] == b"\x89PNG"
    port = proc.stdout.split("broker on 127.0.0.1:", 1)[1].split(";", 1)[0]
    assert not _processes_mentioning(str(out_dir)) and not _processes_mentioning(f"127.0.0.1:{port}")


def test_fix_the_crs_cannot_project_is_rejected_not_lost(tmp_path):
    from stream.replay import replay

    fixes = tmp_path / "f.csv"
    fixes.write_text("officer_id,ts,lat,lon\nA,1709560800000,-7.0,-93.0\nA,1709560810000,52.9,-1.1\n")
    result = replay(fixes, geo.NOTTINGHAM_HOTSPOTS_PATH)
    assert result.rejected.rows() == [(2, "outside_crs", str(fixes))]


@pytest.mark.parametrize("content, problem", [(None, "cannot read"), ("{}".encode("utf-16"), "not UTF-8")])
def test_unreadable_hotspot_file_is_a_clear_error(tmp_path, capsys, content, problem):
    hs = tmp_path / "hs.geojson"
    if content is not None:
        hs.write_bytes(content)
    fixes = tmp_path / "f.csv"
    fixes.write_text("officer_id,ts,lat,lon\n")
    assert main(["replay", "--fixes", str(fixes), "--hotspots", str(hs), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "hs.geojson" in err and problem in err
