import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from services.kafka.launcher import KafkaBroker

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[3]


def create_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def consume_all(bootstrap: str, topic: str, group_id: str | None = None, expect: int = 1) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group_id, auto_offset_reset="earliest", consumer_timeout_ms=20_000
    )
    try:
        records = []
        for record in consumer:
            records.append((record.key, record.value))
            if len(records) >= expect:
                break
        return records
    finally:
        consumer.close()


def brokers_started_from(directory: Path) -> list[int]:
    """Pids of java processes whose command line mentions ``directory`` (Linux /proc)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "java" in command and str(directory) in command:
            pids.append(int(proc.name))
    return pids


def test_session_broker_answers(kafka_broker):
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()


def test_a_produced_message_is_consumed_back(settings):
    topic = settings.topic("loop.launcher-test")
    create_topic(settings.kafka_bootstrap, topic)
    produce(settings.kafka_bootstrap, topic, b"sample-1", b"hello")
    assert consume_all(settings.kafka_bootstrap, topic, group_id=f"{settings.topic_prefix}group") == [
        (b"sample-1", b"hello")
    ]


def test_a_restarted_broker_keeps_its_messages_and_stop_leaves_no_java(tmp_path):
    broker = KafkaBroker(tmp_path / "kafka", nice=5)
    with broker:
        first_pid = broker.pid
        assert psutil.Process(first_pid).nice() == min(os.nice(0) + 5, 19)  # the JVM itself, not a wrapper
        create_topic(broker.bootstrap, "durable")
        produce(broker.bootstrap, "durable", b"k", b"kept across a restart")
    assert not broker.is_running() and not (tmp_path / "kafka" / "kafka.pid").exists()
    assert brokers_started_from(tmp_path) == []
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)

    with broker:  # same data dir, same port
        assert broker.pid != first_pid
        assert consume_all(broker.bootstrap, "durable") == [(b"k", b"kept across a restart")]
    assert brokers_started_from(tmp_path) == []


def test_stop_kills_a_broker_that_ignores_sigterm(tmp_path):
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        os.kill(broker.pid, signal.SIGSTOP)  # a stopped JVM cannot run its shutdown hook
        started = time.monotonic()
        broker.stop(timeout=2)
        assert time.monotonic() - started < 15
    finally:
        broker.stop()
    assert brokers_started_from(tmp_path) == []


def test_the_command_line_starts_reports_and_stops_a_detached_broker(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LOOP_DATA_DIR": str(tmp_path), "LOOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "services.kafka", *args]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)

    try:
        started = cli("start")
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout
        # The command has exited; the broker it started lives on, findable through its data dir.
        assert KafkaBroker(tmp_path / "kafka").answers()

        status = cli("status")
        assert status.returncode == 0 and "answering" in status.stdout

        assert cli("stop").returncode == 0
        assert cli("status").returncode == 1
        assert brokers_started_from(tmp_path) == []
    finally:
        KafkaBroker(tmp_path / "kafka").stop()
