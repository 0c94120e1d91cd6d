"""The compose file's promises: infrastructure has healthchecks, services wait for it, secrets are required."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
INFRA = {"kafka", "redis", "postgres"}


def test_infrastructure_is_healthchecked():
    for name in INFRA:
        assert "healthcheck" in COMPOSE["services"][name], name


def test_project_services_wait_for_healthy_infrastructure_and_the_init_service():
    project = {name: s for name, s in COMPOSE["services"].items() if name not in INFRA | {"init"}}
    assert project
    for name, service in project.items():
        depends = {dep: cond["condition"] for dep, cond in service["depends_on"].items()}
        assert depends == {**dict.fromkeys(INFRA, "service_healthy"), "init": "service_completed_successfully"}, name
        assert service["restart"] == "unless-stopped"
    init = COMPOSE["services"]["init"]
    assert init["command"] == ["python", "-m", "loop.cli", "init"] and init["restart"] == "no"
    assert {dep: cond["condition"] for dep, cond in init["depends_on"].items()} == {
        "kafka": "service_healthy", "postgres": "service_healthy"}


def test_the_data_volume_is_mounted_where_it_is_used_and_kafka_keeps_its_log_on_its_volume():
    services = COMPOSE["services"]
    assert services["store-writer"]["volumes"] == []  # its store is PostgreSQL
    for name in ("init", "generator", "jobs-worker", "controller", "verifier", "api"):
        assert services[name]["volumes"] == ["loop-data:/data"], name
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert services["kafka"]["volumes"] == ["kafka-data:/var/lib/kafka/data"]


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
