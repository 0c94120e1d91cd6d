"""The launcher's three-node KRaft cluster: every node a broker and a voter, the loop's topics on three replicas with
two in sync, and the loop's own producer and consumer carrying on while one node is down."""

from __future__ import annotations

from uuid import uuid4

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from schemas.messages import PARTITIONS
from services.bus import create_topics
from services.kafka.launcher import KafkaCluster, cluster_size
from services.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=key, value=value).get(timeout=60)
    finally:
        producer.close()


def consume_all(bootstrap: str, topic: str, expect: int) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=30_000)
    try:
        values = []
        for record in consumer:
            values.append(record.value)
            if len(values) >= expect:
                break
        return values
    finally:
        consumer.close()


def topic_layout(bootstrap: str, topic: str) -> tuple[list[int], str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        [described] = admin.describe_topics([topic])
        replicas = [len(p["replica_nodes"]) for p in described["partitions"]]
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])  # the topic's own settings
        return replicas, configs["topic"][topic]["min.insync.replicas"]["value"]
    finally:
        admin.close()


def test_a_three_node_cluster_keeps_three_replicas_and_carries_on_with_a_node_down(tmp_path):
    cluster = KafkaCluster(tmp_path / "kafka", nodes=3, heap="256m")
    try:
        cluster.start(timeout=240)
        assert cluster_size(tmp_path / "kafka") == 3 and len(cluster.bootstrap.split(",")) == 3
        settings = Settings(data_dir=tmp_path, kafka_bootstrap=cluster.bootstrap, topic_prefix=f"t{uuid4().hex[:8]}.")
        create_topics(settings)
        topic = settings.topic("loop.candidates")
        replicas, min_isr = topic_layout(cluster.bootstrap, topic)
        assert replicas == [3] * PARTITIONS["loop.candidates"] and min_isr == "2"

        produce(cluster.bootstrap, topic, b"k1", b"before")
        cluster.nodes[1].stop()  # one node of three down: two replicas stay in sync, acks=all still succeeds
        assert not cluster.nodes[1].is_running()
        produce(cluster.bootstrap, topic, b"k2", b"during")
        assert sorted(consume_all(cluster.bootstrap, topic, expect=2)) == [b"before", b"during"]

        cluster.start(timeout=240)  # starts the stopped node only; it rejoins as itself
        assert all(node.answers() for node in cluster.nodes)
        again = KafkaCluster(tmp_path / "kafka", nodes=3)  # a later command finds the same ports
        assert again.bootstrap == cluster.bootstrap
    finally:
        cluster.stop()
    assert not cluster.is_running()
