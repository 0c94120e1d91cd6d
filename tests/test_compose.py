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


def merged(*files: str) -> dict:
    """The compose files merged as `docker compose -f a -f b` merges them: mappings key by key, the rest replaced."""
    def merge(base, override):
        if isinstance(base, dict) and isinstance(override, dict):
            return {**base, **{key: merge(base.get(key), value) for key, value in override.items()}}
        return override
    result: dict = {}
    for name in files:
        result = merge(result, yaml.safe_load((ROOT / name).read_text()))
    return result


def test_the_cluster_override_runs_three_voters_with_three_replicas_two_in_sync():
    stack = merged("docker-compose.yml", "docker-compose.cluster.yml")
    nodes = {name: stack["services"][name] for name in ("kafka", "kafka-2", "kafka-3")}
    voters = "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    assert {n["environment"]["KAFKA_NODE_ID"] for n in nodes.values()} == {1, 2, 3}
    for name, node in nodes.items():
        env = node["environment"]
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters, name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (3, 2)
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3 and env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert "-ge 3" in node["healthcheck"]["test"][1]  # healthy once it sees all three brokers
    assert len({n["environment"]["CLUSTER_ID"] for n in nodes.values()}) == 1
    project = [name for name, s in stack["services"].items() if name not in INFRA | set(nodes)]
    assert project
    for name in project:
        env = stack["services"][name]["environment"]
        assert env["LOOP_KAFKA_BOOTSTRAP"] == "kafka:9092,kafka-2:9092,kafka-3:9092" and env["LOOP_KAFKA_NODES"] == "3"
        assert env["LOOP_DATA_DIR"] == "/data"  # the rest of the environment is the base file's
