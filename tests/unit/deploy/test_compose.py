"""docker-compose.kafka.yml, checked without a Docker engine: it validates against the Compose
specification's JSON schema (tests/vendor/compose-spec.json), and what made it not run is fixed and stays
fixed: Kafka keeps its log in its volume, Prometheus scrapes the gateway and the worker where they listen,
images are pinned, every long-running service has a healthcheck, every stateful path is on a volume, and
no secret has a default."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.kafka.yml"
ONE_SHOT = {"init"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> named volume or host path."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def test_validates_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "vendor" / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_images_are_pinned() -> None:
    """A full release number, not a moving tag (`postgres:15`, `redis:7`, `latest`). PostgreSQL numbers its
    releases major.minor since version 10."""
    for name, service in services().items():
        image = service["image"]
        release = r"\d+\.\d+" if image.startswith("postgres:") else r"v?\d+\.\d+\.\d+"
        assert re.search(rf":{release}(-[a-z0-9.]+)?$", image), f"{name}: {image} is not pinned to a release"


def test_long_running_services_have_healthchecks_and_dependencies_wait_for_them() -> None:
    all_services = services()
    for name, service in all_services.items():
        if name not in ONE_SHOT:
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in all_services[dependency], f"{name} waits on {dependency}'s health"
            if how["condition"] == "service_completed_successfully":
                assert dependency in ONE_SHOT
    for name in ("gateway", "worker"):
        assert all_services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_kafka_keeps_its_log_in_its_volume() -> None:
    kafka = services()["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert mounts(kafka).get(log_dirs) == "kafka-data"
    listeners = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "kafka:19092" in listeners and "127.0.0.1:9092" in listeners
    for name in ("gateway", "worker", "init"):
        assert services()[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092", name


def test_state_lives_on_named_volumes() -> None:
    s = services()
    declared = set(compose()["volumes"])
    expected = {("postgres", "/var/lib/postgresql/data"), ("redis", "/data"), ("kubo", "/data/ipfs"),
                ("gateway", s["gateway"]["environment"]["FILE_BUFFER_DIR"]),
                ("worker", s["worker"]["environment"]["TABLE_DIR"]), ("prometheus", "/prometheus")}
    for name, path in expected:
        assert mounts(s[name]).get(path) in declared, f"{name}: {path} is not on a named volume"
    used = {source for service in s.values() for source in mounts(service).values() if not source.startswith(".")}
    assert used == declared


def test_prometheus_scrapes_the_gateway_and_the_worker_where_they_listen() -> None:
    s = services()
    config_file = mounts(s["prometheus"])
    host_config = {target: source for target, source in config_file.items() if source.startswith("./")}
    config = yaml.safe_load((ROOT / host_config["/etc/prometheus/prometheus.yml"]).read_text())
    assert host_config["/etc/prometheus/alerts.yml"] == "./deploy/prometheus/alerts.yml"
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "ingestflow"  # what the alerts and the dashboard's variable select
    targets = {t for static in job["static_configs"] for t in static["targets"]}
    listening = {f"gateway:{s['gateway']['environment']['PORT']}", f"worker:{s['worker']['environment']['WORKER_PORT']}"}
    assert targets == listening
    for name in ("gateway", "worker"):
        assert s[name]["environment"]["HOST"] == "0.0.0.0", f"{name} must listen beyond its own loopback"
    datasource = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "datasources" /
                                 "prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"


def test_ports_are_published_on_loopback_only_and_secrets_have_no_default() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host"
    for name in ("gateway", "worker", "init"):
        env = services()[name]["environment"]
        for secret in ("INGEST_APP_TOKEN", "CRON_SECRET", "LIGHTHOUSE_PRIVATE_KEY"):
            assert re.fullmatch(r"\$\{" + secret + r":\?[^}]+\}", env[secret]), f"{name}: {secret} has a default"


def test_the_image_is_built_from_the_repository() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", dockerfile, re.M)
    for part in ("app", "agents", "tables", "schemas"):
        assert f"COPY {part} {part}" in dockerfile
    assert services()["gateway"]["build"] == "." and services()["gateway"]["image"] == services()["worker"]["image"]


def test_compose_prometheus_config_loads_with_its_rules(promtool: str, tmp_path: Path) -> None:
    shutil.copy(ROOT / "deploy" / "prometheus" / "prometheus-compose.yml", tmp_path / "prometheus.yml")
    shutil.copy(ROOT / "deploy" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["gateway", "worker"])
def test_healthchecks_ask_the_process_itself(name: str) -> None:
    service = services()[name]
    port = service["environment"]["PORT" if name == "gateway" else "WORKER_PORT"]
    assert f"http://127.0.0.1:{port}/health/ready" in " ".join(service["healthcheck"]["test"])
