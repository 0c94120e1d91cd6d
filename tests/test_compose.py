"""The compose file's promises: infrastructure has healthchecks, services wait for it, secrets are required."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
INFRA = {"kafka", "redis", "postgres"}


def test_infrastructure_is_healthchecked():
    for name in INFRA:
        assert "healthcheck" in COMPOSE["services"][name], name


def test_project_services_wait_for_healthy_infrastructure():
    project = {name: s for name, s in COMPOSE["services"].items() if name not in INFRA}
    assert project
    for name, service in project.items():
        depends = service["depends_on"]
        assert {dep: cond["condition"] for dep, cond in depends.items()} == dict.fromkeys(INFRA, "service_healthy"), name


def test_secrets_are_required_not_defaulted():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text
    assert "${LOOP_API_TOKEN:?" in text


def test_kafka_runs_in_kraft_mode_from_the_official_image():
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
