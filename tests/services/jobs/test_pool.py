"""A pool process killed while idle leaves the pool's read lock taken; the worker frees it and the next job runs."""

import os
import signal
from types import SimpleNamespace

import billiard
import pytest
from billiard.queues import SimpleQueue

from services.jobs import submit_job
from services.jobs.pool import OrphanWatch, read_lock_orphaned

from .conftest import start_worker, wait_until


def _pool(jobs: list[SimpleNamespace], live: int = 1, locked: bool = True) -> SimpleNamespace:
    queue = SimpleQueue(ctx=billiard.get_context())
    if locked:
        queue._rlock.acquire()
    return SimpleNamespace(_inqueue=queue, _cache=dict(enumerate(jobs)),
                           _pool=[SimpleNamespace(exitcode=None) for _ in range(live)])


def _job(accepted: bool = False, ready: bool = False) -> SimpleNamespace:
    return SimpleNamespace(_accepted=accepted, ready=lambda: ready)


def test_a_waiting_job_with_an_idle_process_and_a_taken_lock_is_an_orphaned_lock():
    assert read_lock_orphaned(_pool([_job()]))


@pytest.mark.parametrize("pool", [
    _pool([_job()], locked=False),  # the lock is free: a process is about to read
    _pool([]),  # nothing waits: an idle process holds the lock while it waits, as it should
    _pool([_job(accepted=True), _job()]),  # the only process runs a job: the waiting one waits its turn
    _pool([_job()], live=0),  # no process is alive yet
], ids=["lock-free", "nothing-waits", "all-busy", "no-process"])
def test_a_lock_a_live_process_may_hold_is_left_alone(pool):
    assert not read_lock_orphaned(pool)


def test_the_lock_is_released_once_after_it_looked_orphaned_for_the_whole_wait():
    watch = OrphanWatch(after_s=10)
    assert [watch.due(True, t) for t in (0, 5, 9.9)] == [False, False, False]
    assert watch.due(True, 10)
    assert not watch.due(True, 12)  # the next release waits a full period again
    assert not watch.due(False, 25)
    assert not watch.due(True, 26)


@pytest.mark.kafka
def test_a_job_runs_after_the_pool_process_was_killed_while_idle(embedded):
    settings, events, workers = embedded
    worker = start_worker(settings, workers, "pool")
    (idle,) = worker.children()
    os.kill(idle, signal.SIGKILL)  # it held the pool's read lock while it waited for a job
    wait_until(lambda: worker.children() and idle not in worker.children(), 30, "the pool to start a new process")
    job_id = submit_job("sleepy", {"steps": 2, "step_s": 0.1}, settings=settings)
    done = events.wait_for(job_id, "succeeded", timeout=90)
    assert [e.state for e in done].count("succeeded") == 1
    assert "released the pool's job pipe read lock" in worker.log()
