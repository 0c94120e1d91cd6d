"""A pool that a process killed while idle left unable to start jobs, freed again.

On a broker without asynchronous I/O (the embedded default: kombu's SQLAlchemy transport) Celery runs billiard's
plain pool, whose processes share one pipe of jobs. An idle process waits for its next job holding that pipe's read
lock, so one killed while idle (the OOM killer, a ``kill -9``) leaves the lock taken for good: the processes started
in its place wait for the lock, every job the worker receives from then on stays "received" and never starts, and
with one job at a time the worker takes nothing more. Celery's asynchronous pool (Redis, AMQP) gives each process a
pipe of its own and is not affected.

``FreeReadLock`` watches from the worker's timer. A job handed to the pool that no process has accepted for
``WEDGED_AFTER_S``, while fewer jobs run than the pool has live processes, means that no live process can read: a
live idle process holding the lock reads a job within milliseconds, so the holder is dead. The step then releases
the lock once, for one of the waiting processes to take it and the job, and logs a warning.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.concurrency.asynpool import AsynPool

from services.jobs.steps import TimedStep

log = logging.getLogger(__name__)

#: A job handed to the pool and not accepted this long, with a process idle, has no live reader.
WEDGED_AFTER_S = 10.0
WATCH_TICK_S = 2.0


def read_lock_orphaned(pool: Any) -> bool:
    """Whether billiard's plain ``pool`` holds a job no process has accepted while a live process is idle and the
    shared pipe's read lock is taken: the lock's holder can then only be a dead process."""
    if isinstance(pool, AsynPool):
        return False
    lock = getattr(getattr(pool, "_inqueue", None), "_rlock", None)
    if lock is None:
        return False
    jobs = list(pool._cache.values())
    waiting = [job for job in jobs if not job._accepted]
    running = sum(1 for job in jobs if job._accepted and not job.ready())
    live = sum(1 for process in list(pool._pool) if process.exitcode is None)
    return bool(waiting) and running < live and lock._semlock._get_value() == 0


class OrphanWatch:
    """How long the read lock has looked orphaned; due once it has for ``after_s`` on the monotonic clock."""

    def __init__(self, after_s: float = WEDGED_AFTER_S) -> None:
        self.after_s = after_s
        self.since: float | None = None

    def due(self, orphaned: bool, now: float) -> bool:
        if not orphaned:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        if now - self.since < self.after_s:
            return False
        self.since = None  # a second release only after another full wait
        return True


class FreeReadLock(TimedStep):
    """A worker step: on a timer, release the pool's read lock where a dead process holds it."""

    requires = {"celery.worker.components:Timer", "celery.worker.components:Pool"}
    interval = WATCH_TICK_S

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.watch = OrphanWatch()

    def tick(self, worker: Any) -> None:
        pool = getattr(getattr(worker, "pool", None), "_pool", None)
        if pool is None:
            return
        try:
            orphaned = read_lock_orphaned(pool)
        except RuntimeError:  # the pool's table changed while it was read: look again on the next tick
            return
        if self.watch.due(orphaned, time.monotonic()):
            pool._inqueue._rlock.release()
            log.warning("released the pool's job pipe read lock: a job waited %.0f s with a process idle, so the "
                        "lock's holder was a dead process", self.watch.after_s)
