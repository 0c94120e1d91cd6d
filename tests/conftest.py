"""Fixtures shared by the whole test tree: the real servers some tests need, and settings that point at them.

Tests say what they need with markers (``@pytest.mark.kafka`` ...); a marked test gets its server automatically.
Each server is started once per session, on free ports in a temporary directory, or taken from the environment:

    LOOP_TEST_KAFKA_BOOTSTRAP=host:port   use that Kafka instead of starting one
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from uuid import uuid4

import pytest

from services.settings import Settings

# -- Kafka ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalKafka:
    """A broker this session did not start (``LOOP_TEST_KAFKA_BOOTSTRAP``)."""

    bootstrap: str


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """One Kafka broker for the whole session: a ``KafkaBroker`` on free ports, or the external one."""
    external = os.environ.get("LOOP_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield ExternalKafka(external)
        return
    from services.kafka.launcher import KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def _kafka_for_marked_tests(request):
    if request.node.get_closest_marker("kafka"):
        request.getfixturevalue("kafka_broker")


# -- Settings ------------------------------------------------------------------------------------------------


@pytest.fixture
def settings(kafka_broker, tmp_path) -> Settings:
    """Settings for one test: its own data directory, and a topic prefix no other test shares."""
    return Settings(data_dir=tmp_path, kafka_bootstrap=kafka_broker.bootstrap, topic_prefix=f"t{uuid4().hex[:8]}.")
