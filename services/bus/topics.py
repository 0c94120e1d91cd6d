"""Topic creation with the partition counts of the design's topic table."""

from __future__ import annotations

import logging
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.messages import PARTITIONS
from services.settings import Settings

log = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    return [settings.topic(name) for name in PARTITIONS]


def create_topics(settings: Settings, *, timeout_s: float = 60.0) -> list[str]:
    """Create every topic that does not exist yet; returns the names created. Waits for the broker."""
    admin = _connect_admin(settings, timeout_s)
    try:
        existing = set(admin.list_topics())
        # The brokers seen now, or the cluster's declared size where a node has not registered yet.
        replicas = replication_factor(max(len(admin.describe_cluster()["brokers"]), settings.kafka_nodes))
        configs = {"retention.ms": "-1"}  # kept forever: replaying the topics is how the store is rebuilt
        if replicas >= 3:
            configs["min.insync.replicas"] = "2"  # acks=all: a write on two copies, and one node may be down
        wanted = [
            NewTopic(name=settings.topic(name), num_partitions=count, replication_factor=replicas,
                     topic_configs=dict(configs))
            for name, count in PARTITIONS.items()
            if settings.topic(name) not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted, timeout_ms=int(timeout_s * 1000), wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass  # another process won the race; the topic is there, which is all we need
        return [topic.name for topic in wanted]
    finally:
        admin.close()


def replication_factor(brokers: int) -> int:
    """Copies of each partition: one per broker, up to three."""
    return max(1, min(3, brokers))


def _connect_admin(settings: Settings, timeout_s: float) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="loop-admin")
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("waiting for Kafka at %s: %s", settings.kafka_bootstrap, exc)
            time.sleep(1.0)
