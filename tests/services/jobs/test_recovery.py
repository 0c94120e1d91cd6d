"""A job whose worker is killed while it runs is queued again by the next worker on the embedded broker."""

import os
import signal
from uuid import uuid4

import pytest

from services.bus import create_topics
from services.jobs import close_publishers, job_status, submit_job
from services.settings import Settings

from .conftest import JobEventLog, Worker

pytestmark = pytest.mark.kafka


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


def test_a_job_whose_worker_was_killed_runs_again_in_the_next_worker(embedded, tmp_path):
    settings, events, workers = embedded
    first = start_worker(settings, workers, "first")
    job_id = submit_job("sleepy", {"steps": 40, "step_s": 0.1, "marker": str(tmp_path / "ran")}, settings=settings)
    events.wait_for(job_id, "progress")
    killed_pid = int((tmp_path / "ran").read_text())
    os.killpg(first.pid, signal.SIGKILL)  # no warm shutdown: the job's message stays taken
    first.process.wait()
    assert job_status(job_id, settings=settings).state in ("started", "progress")

    second = start_worker(settings, workers, "second")
    done = events.wait_for(job_id, "succeeded", timeout=60)
    states = [e.state for e in done]
    assert states.count("started") == 2 and states.count("succeeded") == 1
    requeued = [e for e in done if e.state == "queued" and "stopped while it ran" in e.message]
    assert len(requeued) == 1 and f"pid {killed_pid}" in requeued[0].message
    assert done[-1].result["pid"] != killed_pid and done[-1].result["pid"] in second.children()
    assert job_status(job_id, settings=settings).state == "succeeded"


def test_a_worker_starting_beside_a_running_job_leaves_it_alone(embedded):
    settings, events, workers = embedded
    start_worker(settings, workers, "running")
    job_id = submit_job("sleepy", {"steps": 30, "step_s": 0.1}, settings=settings)
    events.wait_for(job_id, "progress")
    start_worker(settings, workers, "beside")
    done = events.wait_for(job_id, "succeeded", timeout=60)
    assert [e.state for e in done].count("started") == 1
    assert not [e for e in done if e.state == "queued" and "stopped while it ran" in e.message]
