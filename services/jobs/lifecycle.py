"""A job's life: submitted, started, progressing, and ended (succeeded, failed or cancelled), on ``loop.jobs``.

Writing a job::

    from services.jobs import JobContext, job_task

    @job_task(queue="train", soft_time_limit=4 * 3600)
    def train_adapter(ctx: JobContext, *, snapshot_id: str) -> dict:
        for step in range(steps):
            ...
            ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")  # also where a cancel takes effect
        return {"adapter_id": adapter_id}                                   # the result of ``succeeded``

Running one (``services.jobs.control``): ``job_id = submit_job("train_adapter", {"snapshot_id": "..."})``; watching it:
``job_status(job_id)`` or the ``loop.jobs`` topic; stopping it: ``request_cancel(job_id)``.

Cancelling is cooperative and works the same on every broker: ``request_cancel`` publishes ``cancelling`` and
sets ``Job.cancel_requested`` in the SQL store; the job reads that flag when it starts (a job cancelled while
still queued ends ``cancelled`` without running) and at ``ctx.progress``/``ctx.check_cancelled`` (a running job
raises ``JobCancelled`` there and ends ``cancelled``). A job that does not call them runs to its end or its
time limit.

One module, because the context a job reports through, the task class that runs it and the decorator that binds
them are one protocol: the end state the task publishes is decided by what the context saw (a cancel, a failure).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from celery import Task, shared_task, signals
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from schemas.messages import JobEvent, JobState
from schemas.tables import Job
from services.bus import EventProducer
from services.jobs.app import (
    DEFAULT_SOFT_TIME_LIMIT_S,
    DEFAULT_TIME_LIMIT_S,
    HARD_LIMIT_GRACE_S,
    MAX_JOB_SECONDS,
    register_route,
)
from services.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: The Celery state a job is in between ``submit_job`` and a worker taking it (Celery's PENDING means "unknown").
QUEUED = "QUEUED"
PROGRESS = "PROGRESS"
PUBLISH_TIMEOUT_S = 30.0


class JobCancelled(Exception):
    """Raised in a job by ``progress``/``check_cancelled`` once a cancel was requested; the job ends ``cancelled``."""


@dataclass(frozen=True)
class JobSpec:
    """A job this process knows: its function and the queue it runs on."""

    name: str
    queue: str
    fn: Callable[..., Any]


#: Every job registered with ``@job_task`` in this process, by name.
JOBS: dict[str, JobSpec] = {}


# -- per-process connections (a worker's pool children are forked: each makes its own) --------------------


_producers: dict[tuple[int, str], EventProducer] = {}
_producers_lock = threading.Lock()


def _producer(settings: Settings) -> EventProducer:
    key = (os.getpid(), settings.model_dump_json())
    with _producers_lock:
        if key not in _producers:
            _producers[key] = EventProducer(settings, client_id=f"loop-jobs-{os.getpid()}")
        return _producers[key]


@functools.cache
def store_engine(pid: int, store_url: str) -> Engine:
    from services.store.db import open_store

    return open_store(url=store_url)


def publish_job_event(event: JobEvent, settings: Settings, *, wait: bool = False) -> None:
    """Publish ``event`` on ``loop.jobs``; ``wait`` blocks until Kafka has it (before anything that must follow it)."""
    future = _producer(settings).publish(event)
    if wait:
        future.get(timeout=PUBLISH_TIMEOUT_S)


def close_publishers() -> None:
    """Flush and close this process's producers (at worker shutdown, and between tests)."""
    with _producers_lock:
        mine = [key for key in _producers if key[0] == os.getpid()]
        producers = [_producers.pop(key) for key in mine]
        _producers.clear()  # a forked child's copies of its parent's producers are not its to close
    for producer in producers:
        producer.close(timeout=PUBLISH_TIMEOUT_S)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _close_on_shutdown(**_kwargs) -> None:
    try:
        close_publishers()
    except Exception:  # noqa: BLE001 - shutting down anyway; the terminal events were already waited for
        log.exception("closing the job event producers failed")


@signals.task_unknown.connect
def _unknown_job(sender=None, name: str = "", id: str = "", **_kwargs) -> None:  # noqa: A002 - the signal's name
    # A job name no module of this worker defines (a typo, or a worker without the trainer): the job
    # would otherwise stay "queued" forever. Celery has stored the failure; the topic gets it too.
    settings = getattr(getattr(sender, "app", None), "loop_settings", None) or get_settings()
    event = JobEvent(job_id=id, kind=name, state="failed", message=f"no job named {name!r} in worker "
                     f"{getattr(sender, 'hostname', '?')}", result=error_result("NotRegistered", name))  # fmt: skip
    publish_job_event(event, settings, wait=True)


def _cancel_flag(settings: Settings, job_id: str) -> bool:
    try:
        with store_engine(os.getpid(), settings.store_url).connect() as connection:
            return bool(connection.execute(select(col(Job.cancel_requested)).where(col(Job.id) == job_id)).scalar())
    except SQLAlchemyError as exc:  # a busy store must not fail the job; the next check sees the flag
        log.warning("could not read the cancel flag of job %s: %s", job_id, exc)
        return False


# -- inside a job ------------------------------------------------------------------------------------------


class JobContext:
    """What a running job uses to report progress and to notice that it was cancelled."""

    def __init__(
        self,
        *,
        job_id: str,
        kind: str,
        settings: Settings,
        task: Task | None = None,
        progress_interval_s: float = 1.0,
        cancel_check_interval_s: float = 0.5,
    ) -> None:
        self.job_id = job_id
        self.kind = kind
        self.settings = settings
        self.task = task
        self.progress_interval_s = progress_interval_s
        self.cancel_check_interval_s = cancel_check_interval_s
        self.fraction = 0.0
        self._last_progress = float("-inf")
        self._reported = 0.0  # the fraction last published
        self._last_cancel_check = float("-inf")
        self._cancel_seen = False

    def publish(self, state: JobState, *, message: str = "", result: dict | None = None, wait: bool = False) -> None:
        event = JobEvent(job_id=self.job_id, kind=self.kind, state=state, progress=self.fraction,
                         message=message[:2000], result=result)  # fmt: skip
        publish_job_event(event, self.settings, wait=wait)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` done (0..1); published when ``progress_interval_s`` has passed since the last report
        or the job has crossed another tenth of the way (a short job still shows its progress). Raises
        ``JobCancelled``."""
        self.fraction = min(1.0, max(0.0, float(fraction)))
        now = time.monotonic()
        next_tenth = int(self.fraction * 10) > int(self._reported * 10)
        if now - self._last_progress >= self.progress_interval_s or next_tenth:
            self._last_progress, self._reported = now, self.fraction
            self.publish("progress", message=message)
            if self.task is not None:
                # pid and hostname as in Celery's STARTED: what ``recovery`` checks a running job against
                meta = {"kind": self.kind, "progress": self.fraction, "message": message, "pid": os.getpid(),
                        "hostname": self.task.request.hostname}
                self.task.update_state(state=PROGRESS, meta=meta)
        self.check_cancelled()

    @property
    def cancel_requested(self) -> bool:
        """Whether a cancel was requested (the store is read at most every ``cancel_check_interval_s``)."""
        now = time.monotonic()
        if not self._cancel_seen and now - self._last_cancel_check >= self.cancel_check_interval_s:
            self._last_cancel_check = now
            self._cancel_seen = _cancel_flag(self.settings, self.job_id)
        return self._cancel_seen

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if a cancel was requested; call it where stopping is safe."""
        if self.cancel_requested:
            raise JobCancelled(f"cancelled at {self.fraction:.0%}")


class JobTask(Task):
    """The Celery task class of every job: runs the job function between its lifecycle events."""

    job_fn: Callable[..., Any]
    progress_interval_s = 1.0
    cancel_check_interval_s = 0.5

    @property
    def loop_settings(self) -> Settings:
        return getattr(self.app, "loop_settings", None) or get_settings()

    def run_job(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        ctx = JobContext(
            job_id=self.request.id,
            kind=self.name,
            settings=self.loop_settings,
            task=self,
            progress_interval_s=self.progress_interval_s,
            cancel_check_interval_s=self.cancel_check_interval_s,
        )
        if ctx.cancel_requested:
            self._end_cancelled(ctx, "cancelled before it started")
        ctx.publish("started", message=f"started by {self.request.hostname} (pid {os.getpid()})")
        try:
            value = self.job_fn(ctx, **kwargs)
        except JobCancelled as exc:
            self._end_cancelled(ctx, str(exc))
        except SoftTimeLimitExceeded as exc:
            limit = self.request.timelimit[1] if self.request.timelimit else None
            limit = limit or self.soft_time_limit or self.app.conf.task_soft_time_limit
            self._end_failed(ctx, exc, f"soft time limit of {limit}s exceeded")
            raise
        except Exception as exc:
            self._end_failed(ctx, exc, f"{type(exc).__name__}: {exc}")
            raise
        result = value if isinstance(value, dict) else ({} if value is None else {"value": value})
        ctx.fraction = 1.0
        # Each end is stored in Celery's result before it is published: whoever sees the event and then asks
        # job_status gets the same answer. (Celery stores it once more when the task returns; that is harmless.)
        self.backend.mark_as_done(ctx.job_id, result, request=self.request)
        ctx.publish("succeeded", result=result, wait=True)
        return result

    def _end_failed(self, ctx: JobContext, exc: BaseException, message: str) -> None:
        self.backend.mark_as_failure(ctx.job_id, exc, request=self.request)
        ctx.publish("failed", message=message, result=error_result(type(exc).__name__, str(exc)), wait=True)

    def _end_cancelled(self, ctx: JobContext, message: str) -> None:
        self.backend.mark_as_revoked(ctx.job_id, message, request=self.request)
        ctx.publish("cancelled", message=message, wait=True)
        raise Ignore()  # acknowledged, and Celery keeps the REVOKED state written above

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # A hard time limit kills the child; the worker's main process reports it here (any other error
        # was already published by run_job in the child).
        if isinstance(exc, TimeLimitExceeded):
            limit = exc.args[0] if exc.args else "?"
            event = JobEvent(job_id=task_id, kind=self.name, state="failed", message=f"hard time limit of {limit}s "
                             "exceeded; the job was killed", result=error_result("TimeLimitExceeded", str(limit)))
            publish_job_event(event, self.loop_settings, wait=True)


def error_result(error_type: str, error: str) -> dict[str, str]:
    return {"error_type": error_type, "error": error[:2000]}


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _time_limits(job_name: str, soft: float | None, hard: float | None) -> tuple[float, float]:
    """Both limits of a job, the soft one first: a hard limit below the soft one would only act after the soft
    one (Celery arms the hard timer when the soft one fires), so a job that sets one gets the other to match."""
    if soft is None and hard is None:
        return DEFAULT_SOFT_TIME_LIMIT_S, DEFAULT_TIME_LIMIT_S
    if hard is None:
        assert soft is not None  # both None returned above
        hard = soft + HARD_LIMIT_GRACE_S
    if soft is None:
        soft = max(hard - HARD_LIMIT_GRACE_S, hard * 0.9)
    if not 0 < soft < hard:
        raise ValueError(f"job {job_name!r}: the soft time limit ({soft}s) must be above 0 and below the hard one "
                         f"({hard}s)")  # fmt: skip
    if hard > MAX_JOB_SECONDS:
        raise ValueError(f"job {job_name!r}: a time limit above {MAX_JOB_SECONDS}s would outlast Redis' visibility "
                         "timeout and run the job twice; raise app.MAX_JOB_SECONDS with it")  # fmt: skip
    return soft, hard


def job_task(
    fn: Callable[..., Any] | None = None,
    *,
    queue: str = "default",
    name: str | None = None,
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
    progress_interval_s: float = 1.0,
    cancel_check_interval_s: float = 0.5,
):
    """Register ``fn(ctx, **kwargs) -> dict`` as a job named ``name`` (default: the function's name) on ``queue``.

    Every Celery app of this process gets it; a worker runs it if the module defining it is in
    ``app.JOB_MODULES``, is a ``workers/<role>/jobs.py``, or is passed with ``--include``.
    """

    def decorate(fn: Callable[..., Any]):
        job_name = name or fn.__name__
        soft, hard = _time_limits(job_name, soft_time_limit, time_limit)
        known = JOBS.get(job_name)
        if known is not None and _origin(known.fn) != _origin(fn):  # the same function imported again is fine
            raise ValueError(f"a job named {job_name!r} is already registered by {_origin(known.fn)}")
        register_route(job_name, queue)
        JOBS[job_name] = JobSpec(job_name, queue, fn)

        def run(task: JobTask, **kwargs: Any) -> dict[str, Any]:
            return task.run_job(kwargs)

        run.__name__, run.__qualname__, run.__module__ = fn.__name__, fn.__qualname__, fn.__module__
        run.__doc__ = fn.__doc__
        options: dict[str, Any] = dict(
            name=job_name, bind=True, base=JobTask, queue=queue, job_fn=staticmethod(fn),
            progress_interval_s=progress_interval_s, cancel_check_interval_s=cancel_check_interval_s,
            soft_time_limit=soft, time_limit=hard,
        )  # fmt: skip
        return shared_task(**options)(run)

    return decorate(fn) if fn is not None else decorate
