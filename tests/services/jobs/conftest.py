"""Fixtures for the jobs tests: a real Celery worker process on each broker, and a reader of ``loop.jobs``.

The worker is ``python -m services.jobs worker`` in a subprocess, configured only through the LOOP_* environment
variables, with ``jobs_for_tests`` (next to this file) loaded as an extra module of jobs. Tests using
``job_settings`` run once on the embedded SQLAlchemy (SQLite) broker and once on a throwaway ``redis-server``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from uuid import uuid4

import psutil
import pytest
from kafka import KafkaConsumer, TopicPartition

from schemas.messages import JobEvent
from services.bus import create_topics, decode_message
from services.jobs import close_publishers, request_cancel
from schemas.messages import TERMINAL_JOB_STATES
from services.settings import Settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
WORKER_START_TIMEOUT_S = 60.0


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- Redis ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A throwaway redis-server on a free port; yields its URL without a database number."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the Redis tests")
        pytest.skip(message)
    directory = tmp_path_factory.mktemp("redis")
    port = _free_port()
    log = open(directory / "redis.log", "wb")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "no", "--protected-mode", "no"],  # fmt: skip
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        wait_until(lambda: process.poll() is not None or _pings(client), 20, "redis-server to answer")
        if process.poll() is not None:
            pytest.fail(f"redis-server exited: {(directory / 'redis.log').read_text()[-2000:]}")
        yield f"redis://127.0.0.1:{port}"
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


# -- settings and the worker ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqla", pytest.param("redis", marks=pytest.mark.redis)])
def job_settings(request, kafka_broker, tmp_path_factory):
    """Settings for one broker: a data directory and a topic prefix of their own, topics created.

    One worker serves all the tests of a module on one broker (a worker takes seconds to start and stop);
    the tests tell their jobs apart by id, and ``_no_job_left_running`` keeps one test's job from blocking the next.
    """
    data_dir = tmp_path_factory.mktemp(f"jobs-{request.param}")
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_server") + "/0"
        redis.Redis.from_url(url).flushdb()  # a job left queued by an earlier module must not run here
    else:
        url = f"sqla+sqlite:///{data_dir / 'celery-broker.sqlite'}"
    configured = Settings(
        data_dir=data_dir,
        kafka_bootstrap=kafka_broker.bootstrap,
        topic_prefix=f"t{uuid4().hex[:8]}.",
        celery_broker_url=url,
    )
    create_topics(configured)
    yield configured
    close_publishers()


class Worker:
    """A ``python -m services.jobs worker`` process and its log."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        env = {
            **os.environ,
            "LOOP_DATA_DIR": str(settings.data_dir),
            "LOOP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LOOP_TOPIC_PREFIX": settings.topic_prefix,
            "LOOP_DATABASE_URL": settings.store_url,
            "LOOP_CELERY_BROKER_URL": settings.broker_url,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.jobs", "worker", "--include", "jobs_for_tests", "--loglevel", "INFO"],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT_S) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            return " ready." in self.log()

        wait_until(ready, timeout, "the worker to be ready", interval=0.1)

    def children(self) -> set[int]:
        """The pool's processes (the worker's direct children, whichever of its threads started them)."""
        try:
            return {child.pid for child in psutil.Process(self.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown: the worker stops its pool itself
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def worker(job_settings: Settings):
    """A real worker process for these settings, ready to take jobs."""
    process = Worker(job_settings, job_settings.data_dir / "worker.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


# -- loop.jobs -----------------------------------------------------------------------------------------------


class JobEventLog:
    """Everything on ``loop.jobs`` of one test, by job id, read with a plain consumer from the beginning."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic(JobEvent.topic)
        self.max_bytes = settings.max_message_bytes
        self._consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        assert partitions, f"topic {self.topic} does not exist"
        self._consumer.assign([TopicPartition(self.topic, p) for p in partitions])
        self._consumer.seek_to_beginning()
        self.events: dict[str, list[JobEvent]] = defaultdict(list)

    def poll(self) -> None:
        for records in self._consumer.poll(timeout_ms=100).values():
            for record in records:
                event = decode_message(JobEvent.topic, record.value, max_bytes=self.max_bytes)
                self.events[event.job_id].append(event)

    def states(self, job_id: str) -> list[str]:
        return [event.state for event in self.events[job_id]]

    def wait_for(self, job_id: str, state: str, timeout: float = 30.0) -> list[JobEvent]:
        """Poll until the job has an event in ``state``; returns all of its events so far."""
        return self.wait_for_any(job_id, {state}, timeout)

    def wait_for_any(self, job_id: str, states: set[str] | frozenset[str], timeout: float = 30.0) -> list[JobEvent]:
        def arrived() -> bool:
            self.poll()
            return bool(states.intersection(self.states(job_id)))

        try:
            wait_until(arrived, timeout, f"job {job_id} to reach {' or '.join(sorted(states))}", interval=0.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its events so far: {self.states(job_id)}") from None
        return list(self.events[job_id])

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture(scope="module")
def job_events(job_settings: Settings):
    log = JobEventLog(job_settings)
    yield log
    log.close()


@pytest.fixture(autouse=True)
def _no_job_left_running(request):
    """After a test with a worker: cancel what it left queued or running, so the next test gets the worker."""
    yield
    if "worker" not in request.fixturenames or "job_events" not in request.fixturenames:
        return
    settings, log = request.getfixturevalue("job_settings"), request.getfixturevalue("job_events")
    log.poll()
    open_jobs = [job_id for job_id in log.events if not TERMINAL_JOB_STATES.intersection(log.states(job_id))]
    for job_id in open_jobs:
        request_cancel(job_id, settings=settings)
    for job_id in open_jobs:
        log.wait_for_any(job_id, TERMINAL_JOB_STATES, timeout=30)


@pytest.fixture
def embedded(kafka_broker, tmp_path):
    """Settings on the embedded broker with a data directory of their own: no other test's worker takes these jobs."""
    settings = Settings(data_dir=tmp_path, kafka_bootstrap=kafka_broker.bootstrap,
                        topic_prefix=f"t{uuid4().hex[:8]}.", celery_broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    create_topics(settings)
    events = JobEventLog(settings)
    workers: list[Worker] = []
    yield settings, events, workers
    for worker in workers:
        worker.stop()
    events.close()
    close_publishers()


def start_worker(settings: Settings, workers: list[Worker], name: str) -> Worker:
    worker = Worker(settings, settings.data_dir / f"{name}.log")
    workers.append(worker)
    worker.wait_ready()
    return worker
