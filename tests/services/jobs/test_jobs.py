"""Jobs run in a real Celery worker process, publish their life on loop.jobs, and can be cancelled: on both brokers."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3

import pytest
from sqlalchemy import create_engine, select

from schemas.tables import Job
from services.jobs import job_status, job_task, queue_for, request_cancel, submit_job
from services.jobs.app import DEFAULT_TIME_LIMIT_S, MAX_JOB_SECONDS, make_app, register_route
from services.settings import Settings

LONG = {"steps": 2000, "step_s": 0.05}  # 100 s: ends only by being cancelled


@pytest.mark.kafka
def test_a_job_runs_in_the_worker_and_publishes_its_lifecycle_in_order(job_settings, worker, job_events):
    job_id = submit_job("sleepy", {"steps": 4, "step_s": 0.05}, settings=job_settings)

    events = job_events.wait_for(job_id, "succeeded")
    assert [e.state for e in events] == ["queued", "started", *["progress"] * 4, "succeeded"]
    assert [e.progress for e in events if e.state == "progress"] == [0.25, 0.5, 0.75, 1.0]
    assert all(e.kind == "sleepy" for e in events)
    result = events[-1].result
    assert result["steps"] == 4
    assert result["pid"] != os.getpid() and result["pid"] in worker.children()  # a pool process of the worker

    status = job_status(job_id, settings=job_settings)
    assert (status.state, status.kind, status.progress, status.result) == ("succeeded", "sleepy", 1.0, result)


@pytest.mark.kafka
def test_a_failing_job_publishes_failed_with_the_error(job_settings, worker, job_events):
    job_id = submit_job("broken", {"message": "deliberately broken"}, settings=job_settings)

    events = job_events.wait_for(job_id, "failed")
    assert [e.state for e in events] == ["queued", "started", "progress", "failed"]
    assert events[-1].message == "RuntimeError: deliberately broken"
    assert events[-1].result == {"error_type": "RuntimeError", "error": "deliberately broken"}
    assert events[-1].progress == 0.5
    status = job_status(job_id, settings=job_settings)
    assert status.state == "failed" and "deliberately broken" in status.message
    assert request_cancel(job_id, settings=job_settings) is False  # nothing left to cancel
    with pytest.raises(LookupError):
        request_cancel("no-such-job-id", settings=job_settings)


@pytest.mark.kafka
def test_a_job_no_worker_knows_fails(job_settings, worker, job_events):
    job_id = submit_job("no_such_job", settings=job_settings)

    events = job_events.wait_for(job_id, "failed")
    assert [e.state for e in events] == ["queued", "failed"]
    assert events[-1].message.startswith("no job named 'no_such_job' in worker jobs-")
    assert job_status(job_id, settings=job_settings).state == "failed"


@pytest.mark.kafka
def test_a_running_job_is_cancelled(job_settings, worker, job_events):
    job_id = submit_job("sleepy", LONG, settings=job_settings)
    job_events.wait_for(job_id, "progress")

    assert request_cancel(job_id, settings=job_settings) is True
    # the job checks its flag every 50 ms, so by the time the store is read it may have ended already
    assert job_status(job_id, settings=job_settings).state in {"cancelling", "cancelled"}
    events = job_events.wait_for(job_id, "cancelled", timeout=5)

    states = [e.state for e in events]
    assert states[:2] == ["queued", "started"] and states[-1] == "cancelled"
    # cancelling comes from this process; the job reports progress until its next check of the flag
    assert states.count("cancelling") == 1 and set(states[2:-1]) == {"progress", "cancelling"}
    assert 0 < events[-1].progress < 1
    assert job_status(job_id, settings=job_settings).state == "cancelled"
    assert request_cancel(job_id, settings=job_settings) is False
    with create_engine(job_settings.store_url).connect() as connection:  # the request is durable in the store
        assert connection.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar() is True


@pytest.mark.kafka
def test_a_queued_job_cancelled_before_it_starts_never_runs(job_settings, worker, job_events, tmp_path):
    blocker = submit_job("sleepy", LONG, settings=job_settings)
    job_events.wait_for(blocker, "started")
    marker = tmp_path / "queued-job-ran"
    queued = submit_job("sleepy", {"steps": 1, "marker": str(marker)}, settings=job_settings)
    assert job_status(queued, settings=job_settings).state == "queued"

    assert request_cancel(queued, settings=job_settings) is True
    assert request_cancel(blocker, settings=job_settings) is True  # frees the worker (concurrency 1) for it
    job_events.wait_for(blocker, "cancelled", timeout=5)
    events = job_events.wait_for(queued, "cancelled", timeout=10)

    assert [e.state for e in events] == ["queued", "cancelling", "cancelled"]
    assert events[-1].message == "cancelled before it started"
    assert not marker.exists()
    assert job_status(queued, settings=job_settings).state == "cancelled"


@pytest.mark.kafka
def test_a_job_past_its_soft_time_limit_fails(job_settings, worker, job_events):
    job_id = submit_job("overtime", {"seconds": 30}, settings=job_settings)

    events = job_events.wait_for(job_id, "failed", timeout=15)
    assert [e.state for e in events] == ["queued", "started", "failed"]
    assert events[-1].message == "soft time limit of 1.0s exceeded"


@pytest.mark.kafka
def test_a_job_past_its_hard_time_limit_is_killed_and_fails(job_settings, worker, job_events):
    job_id = submit_job("stuck", settings=job_settings)
    killed_pid = int(job_events.wait_for(job_id, "started")[-1].message.rsplit("pid ", 1)[1].rstrip(")"))

    events = job_events.wait_for(job_id, "failed", timeout=15)
    assert [e.state for e in events] == ["queued", "started", "failed"]
    assert events[-1].message == "hard time limit of 2.0s exceeded; the job was killed"
    assert job_status(job_id, settings=job_settings).state == "failed"
    after = submit_job("sleepy", {"steps": 1}, settings=job_settings)  # the worker goes on with a new process
    assert job_events.wait_for(after, "succeeded")[-1].result["pid"] != killed_pid


@pytest.mark.kafka
def test_replay_store_rebuilds_the_sql_view_from_the_topics(job_settings, worker, job_events, tmp_path):
    finished = submit_job("sleepy", {"steps": 1}, settings=job_settings)
    job_events.wait_for(finished, "succeeded")
    target = f"sqlite:///{tmp_path / 'rebuilt.sqlite'}"

    job_id = submit_job("replay_store", {"target_url": target, "max_idle_s": 20}, settings=job_settings)
    events = job_events.wait_for(job_id, "succeeded", timeout=60)

    assert events[-1].result["caught_up"] is True, events[-1].result
    with create_engine(target).connect() as connection:
        rows = {row.id: row for row in connection.execute(select(Job))}
    assert rows[finished].state == "succeeded" and rows[finished].result["steps"] == 1
    assert job_id in rows  # its own "queued", published before it looked at the topics


# -- without servers -----------------------------------------------------------------------------------------


def test_jobs_are_routed_by_name():
    assert queue_for("train_adapter") == "train"
    assert queue_for("evaluate_adapter") == "eval"
    assert queue_for("replay_store") == "default"
    assert queue_for("something_else") == "default"
    register_route("a_test_job_for_eval", "eval")
    assert queue_for("a_test_job_for_eval") == "eval"
    with pytest.raises(ValueError, match="already routed"):
        register_route("a_test_job_for_eval", "train")
    with pytest.raises(ValueError, match="unknown queue"):
        register_route("another_test_job", "gpu")


def test_a_job_gets_a_soft_time_limit_below_its_hard_one():
    @job_task(name="a_test_job_with_a_hard_limit", time_limit=600)
    def limited(ctx):
        return {}

    assert (limited.soft_time_limit, limited.time_limit) == (540, 600)
    with pytest.raises(ValueError, match="below the hard one"):
        job_task(name="a_test_job_with_crossed_limits", soft_time_limit=60, time_limit=30)(lambda ctx: {})
    with pytest.raises(ValueError, match="visibility timeout"):
        job_task(name="a_test_job_too_long", time_limit=MAX_JOB_SECONDS + 1)(lambda ctx: {})


def test_the_app_acks_late_takes_one_job_at_a_time_and_keeps_results_in_sql(tmp_path):
    app = make_app(Settings(data_dir=tmp_path))
    conf = app.conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (True, True, 1)
    assert conf.result_backend == f"db+sqlite:///{tmp_path / 'store.sqlite'}"
    assert conf.broker_url == f"sqla+sqlite:///{tmp_path / 'celery-broker.sqlite'}"
    # kombu hands the SQLAlchemy transport's options to create_engine: only engine arguments may be there
    assert set(conf.broker_transport_options) == {"connect_args"}
    assert {q.name for q in conf.task_queues} == {"train", "eval", "default"}
    assert (conf.task_serializer, conf.result_extended) == ("json", True)
    assert conf.task_soft_time_limit < conf.task_time_limit

    redis_app = make_app(Settings(data_dir=tmp_path, celery_broker_url="redis://localhost:6379/0"))
    # with late acks, Redis would hand a still-running job to another worker after the visibility timeout
    assert redis_app.conf.broker_transport_options["visibility_timeout"] > DEFAULT_TIME_LIMIT_S


def _send_one(args) -> str:
    data_dir, barrier = args
    app = make_app(Settings(data_dir=data_dir))
    barrier.wait()  # every process sends its first message at the same moment
    app.send_task("sleepy", kwargs={}, queue="default")
    return "sent"


def test_processes_starting_together_on_a_fresh_embedded_broker_all_get_their_job_in(tmp_path):
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, context.Pool(6) as pool:
        barrier = manager.Barrier(6)
        assert pool.map(_send_one, [(tmp_path, barrier)] * 6) == ["sent"] * 6
    with sqlite3.connect(tmp_path / "celery-broker.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM kombu_message").fetchone() == (6,)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
