"""deploy/: what can be checked without a Docker engine (none on this machine).

The compose file parses; every file it mounts or builds from exists; the
ports, hosts and topic names in it agree with the code and with the
Prometheus and Grafana files; the Grafana version it runs is the one the
dashboards are checked against (the pinned grafana-foundation-sdk build).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stream.settings import INTERNAL_TOPICS, TOPICS, WorkerSettings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
REPO = DEPLOY.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def flags(command: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in command if a.startswith("--") and "=" in a)


def workers(compose) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("command", [None])[0] == "worker"}


def test_services(compose):
    assert {"kafka", "kafka-init", "worker-1", "worker-2", "prometheus", "grafana"} <= compose["services"].keys()
    assert len(workers(compose)) == 2


def test_mounted_and_built_files_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            dockerfile = context / build["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile}"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for src in line.split()[1:-1]:
                        assert (context / src).exists(), f"Dockerfile copies a missing {src}"


def test_kafka_is_kraft_and_workers_use_its_internal_listener(compose):
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller" and "ZOOKEEPER" not in " ".join(env)
    internal = re.search(r"PLAINTEXT://([^,]+)", env["KAFKA_ADVERTISED_LISTENERS"]).group(1)
    for name, w in workers(compose).items():
        assert flags(w["command"])["brokers"] == internal, name


def test_prometheus_scrapes_every_worker_on_its_metrics_port(compose):
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] if job["job_name"] == "hotspot-dwell"
               for sc in job["static_configs"] for t in sc["targets"]}
    expected = {f"{w.get('hostname', name)}:{flags(w['command'])['metrics-port']}"
                for name, w in workers(compose).items()}
    assert targets == expected
    for name, w in workers(compose).items():
        # A worker serves metrics on 127.0.0.1 by default; in a container it must listen on all interfaces.
        assert w["environment"]["HOTSPOT_DWELL_METRICS_HOST"] == "0.0.0.0"
        assert WorkerSettings().metrics_host == "127.0.0.1"
    mounts = {v.split(":")[1] for v in compose["services"]["prometheus"]["volumes"]}
    assert "/etc/prometheus/prometheus.yml" in mounts and "/etc/prometheus/rules" in mounts
    assert all(f.startswith("rules/") for f in prom["rule_files"])


def test_grafana_datasource_and_dashboards_are_mounted_where_provisioning_looks(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/hotspot-dwell.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./grafana/dashboards"]
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    port = compose["services"]["prometheus"]["ports"][0].split(":")[1]
    assert ds["url"] == f"http://prometheus:{port}" and ds["uid"] == "prometheus"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()


def test_grafana_version_matches_the_pinned_sdk_build(compose):
    image = compose["services"]["grafana"]["image"]
    pin = re.search(r'grafana-foundation-sdk==\d+!([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert image == f"grafana/grafana:{pin}"


def test_topics_script_creates_the_code_topics():
    script = (DEPLOY / "kafka" / "topics.sh").read_text()
    assert set(re.findall(r"^topic ([a-z-]+) ", script, re.M)) == {WorkerSettings().topic(t) for t in TOPICS}
    assert subprocess.run(["bash", "-n", str(DEPLOY / "kafka" / "topics.sh")]).returncode == 0
    # The ones checked against the input's partition count are exactly the internal topics.
    assert set(re.findall(r"^topic ([a-z-]+) .* internal$", script, re.M)) == {WorkerSettings().topic(t)
                                                                               for t in INTERNAL_TOPICS}


# kafka-topics.sh as far as topics.sh uses it: --create --if-not-exists and --describe
# (its first line as Kafka 3.9 prints it), over one file per topic holding its count.
FAKE_KAFKA_TOPICS = r"""#!/usr/bin/env bash
set -eu
mode= topic= partitions=
while [ $# -gt 0 ]; do
    case $1 in
        --create) mode=create ;;
        --describe) mode=describe ;;
        --topic) topic=$2; shift ;;
        --partitions) partitions=$2; shift ;;
    esac
    shift
done
case $mode in
    create) [ -e "$FAKE_TOPICS/$topic" ] || echo "$partitions" > "$FAKE_TOPICS/$topic" ;;
    describe)
        [ -e "$FAKE_TOPICS/$topic" ] || { echo "Error: topic $topic does not exist" >&2; exit 1; }
        n=$(cat "$FAKE_TOPICS/$topic")
        printf 'Topic: %s\tTopicId: x\tPartitionCount: %s\tReplicationFactor: 1\tConfigs: \n' "$topic" "$n"
        for ((p = 0; p < n; p++)); do printf '\tTopic: %s\tPartition: %s\tLeader: 1\n' "$topic" "$p"; done ;;
esac
"""


def run_topics_script(tmp_path: Path, existing: dict[str, int], partitions: int = 12):
    bin_dir, topics = tmp_path / "bin", tmp_path / "topics"
    bin_dir.mkdir()
    topics.mkdir()
    (bin_dir / "kafka-topics.sh").write_text(FAKE_KAFKA_TOPICS)
    (bin_dir / "kafka-configs.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    for name, n in existing.items():
        (topics / name).write_text(f"{n}\n")
    proc = subprocess.run(["bash", str(DEPLOY / "kafka" / "topics.sh")], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "KAFKA_BIN": str(bin_dir), "BOOTSTRAP": "kafka:19092",
                               "PARTITIONS": str(partitions), "FAKE_TOPICS": str(topics)})
    return proc, {f.name: int(f.read_text()) for f in topics.iterdir()}


def test_topics_script_gives_every_topic_partitions_when_location_fixes_is_new(tmp_path):
    proc, counts = run_topics_script(tmp_path, {}, partitions=12)
    assert proc.returncode == 0, proc.stderr
    assert counts == {WorkerSettings().topic(t): 12 for t in TOPICS}


def test_topics_script_follows_an_existing_location_fixes(tmp_path):
    """Issue 16: location-fixes made by a platform team with 8 partitions; the internal
    topics must get 8, not the compose file's 12."""
    proc, counts = run_topics_script(tmp_path, {"location-fixes": 8}, partitions=12)
    assert proc.returncode == 0, proc.stderr
    assert counts == {WorkerSettings().topic(t): 8 for t in TOPICS}


def test_topics_script_stops_on_an_internal_topic_with_another_count(tmp_path):
    proc, _ = run_topics_script(tmp_path, {"location-fixes": 8, "hotspot-dwell-visit-batches": 4})
    assert proc.returncode != 0
    assert "hotspot-dwell-visit-batches has 4 partitions but location-fixes has 8" in proc.stderr, proc.stderr


def test_readme_says_the_stack_was_not_started_here():
    text = (DEPLOY / "README.md").read_text()
    assert "not started" in text and "docker compose" in text
