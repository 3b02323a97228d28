"""The shipped Prometheus configuration and rules, checked by promtool (Debian's prometheus package)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.test_metrics import require_promtool

PROM = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_promtool(), *args], cwd=PROM, capture_output=True, text=True, timeout=120)


def test_check_config():
    run = promtool("check", "config", "prometheus.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 2 rule files found" in run.stdout


def test_check_rules():
    run = promtool("check", "rules", "rules/recording.yml", "rules/alerts.yml")
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_unit_test_severity_for_and_summary():
    alerts = [r for g in yaml.safe_load((PROM / "rules" / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((PROM / "tests" / "alerts_test.yml").read_text())["tests"]
    tested = {t["alertname"] for group in tests for t in group.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert {a["alert"] for a in alerts} == tested
    for a in alerts:
        assert a["for"] and a["labels"]["severity"] in {"warning", "critical"} and a["annotations"]["summary"]


def test_unit_tests_of_the_rules():
    run = promtool("test", "rules", "tests/alerts_test.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_a_broken_alert_fails_its_unit_test(tmp_path):
    # The unit tests have teeth: the same tests against an alert with a
    # two-hour threshold instead of one must fail.
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / "recording.yml").write_text((PROM / "rules" / "recording.yml").read_text())
    (tmp_path / "rules" / "alerts.yml").write_text(
        (PROM / "rules" / "alerts.yml").read_text().replace("- time() < 3600", "- time() < 7200"))
    (tmp_path / "tests" / "alerts_test.yml").write_text((PROM / "tests" / "alerts_test.yml").read_text())
    run = subprocess.run([require_promtool(), "test", "rules", "tests/alerts_test.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "HotspotPatrolRunningOut" in run.stdout + run.stderr
