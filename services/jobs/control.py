"""Outside a job: queue one, ask it to stop, and say where it is (``loopctl jobs``, the API, the controller).

``submit_job`` publishes ``queued`` before Celery has the job, ``request_cancel`` publishes ``cancelling`` and
sets the flag the job reads (``lifecycle.JobContext``), and ``job_status`` answers from the SQL store's row,
brought up to date by Celery's result.
"""

from __future__ import annotations

import inspect
import json
import os
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from celery import states
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from schemas.jobs import JOB_REQUESTS
from schemas.messages import TERMINAL_JOB_STATES, JobEvent
from schemas.tables import Job, JobPublic
from services.jobs.app import get_app, queue_for
from services.jobs.lifecycle import (
    JOBS,
    PROGRESS,
    QUEUED,
    error_result,
    publish_job_event,
    store_engine,
)
from services.settings import Settings, get_settings


def submit_job(
    kind: str,
    kwargs: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    job_id: str | None = None,
    countdown: float | None = None,
) -> str:
    """Queue the job ``kind`` with keyword arguments ``kwargs``; publishes ``queued`` and returns the job id. The loop's
    own jobs are validated against their request model (``schemas.jobs``): pydantic's ValidationError, here."""
    settings = settings or get_settings()
    kwargs = dict(kwargs or {})
    if kind in JOB_REQUESTS:
        kwargs = JOB_REQUESTS[kind].model_validate(kwargs).model_dump(exclude_unset=True)
    json.dumps(kwargs)  # a job's arguments travel as JSON: fail here, not in the worker
    if kind in JOBS:
        inspect.signature(JOBS[kind].fn).bind(None, **kwargs)  # TypeError now rather than a failed job later
    job_id = job_id or uuid4().hex
    queue = queue_for(kind)
    app = get_app(settings)
    # Kafka must have ``queued`` before a worker can publish ``started`` (another producer, same partition).
    queued = JobEvent(job_id=job_id, kind=kind, state="queued", progress=0.0, message=f"queued on {queue}")
    publish_job_event(queued, settings, wait=True)
    try:
        # Celery says PENDING for ids it does not know; QUEUED tells job_status that this one exists.
        request = SimpleNamespace(task=kind, args=[], kwargs=kwargs, hostname=None, retries=0,
                                  delivery_info={"routing_key": queue})  # fmt: skip
        app.backend.store_result(job_id, {"kind": kind, "progress": 0.0, "message": queued.message}, QUEUED,
                                 request=request)  # fmt: skip
        app.send_task(kind, kwargs=kwargs, task_id=job_id, queue=queue, countdown=countdown)
    except Exception as exc:
        failed = JobEvent(job_id=job_id, kind=kind, state="failed", progress=0.0, message=f"could not be queued: "
                          f"{type(exc).__name__}: {exc}"[:2000], result=error_result(type(exc).__name__, str(exc)))
        publish_job_event(failed, settings, wait=True)
        raise
    return job_id


def request_cancel(job_id: str, *, settings: Settings | None = None) -> bool:
    """Ask the job to stop; ``False`` if it had already ended, ``LookupError`` if there is no such job.

    A queued job ends ``cancelled`` when a worker takes it, without running; a running one at its next check.
    """
    settings = settings or get_settings()
    status = job_status(job_id, settings=settings)
    if status is None:
        raise LookupError(f"no job {job_id}")
    if status.state in TERMINAL_JOB_STATES:
        return False
    # ``cancelling`` goes out before the flag is set, so that it precedes the job's ``cancelled`` on the topic.
    event = JobEvent(job_id=job_id, kind=status.kind or "unknown", state="cancelling", progress=status.progress,
                     message="cancel requested")  # fmt: skip
    publish_job_event(event, settings, wait=True)
    _record_cancel_request(settings, job_id, event.kind)
    return True


def _record_cancel_request(settings: Settings, job_id: str, kind: str) -> None:
    engine = store_engine(os.getpid(), settings.store_url)
    for _attempt in range(3):
        try:
            with engine.begin() as connection:
                # Only the flag: every other column is the store writer's, from the events.
                done = connection.execute(update(Job).where(col(Job.id) == job_id).values(cancel_requested=True))
                if done.rowcount == 0:
                    now = datetime.now(timezone.utc)
                    connection.execute(insert(Job).values(id=job_id, kind=kind, state="cancelling", message="cancel "
                                                          "requested", cancel_requested=True, updated_at=now))
            return
        except IntegrityError:
            continue  # the store writer inserted the row meanwhile: update it
    raise RuntimeError(f"could not record the cancel request of job {job_id}")


def job_status(job_id: str, *, settings: Settings | None = None) -> JobPublic | None:
    """The job as a user sees it: its row in the store, brought up to date by Celery's result; None if unknown."""
    settings = settings or get_settings()
    with store_engine(os.getpid(), settings.store_url).connect() as connection:
        row = connection.execute(select(Job).where(col(Job.id) == job_id)).mappings().first()
    job = JobPublic.model_validate(dict(row)) if row is not None else None
    if job is not None and job.state in TERMINAL_JOB_STATES:
        return job  # the store has the job's last event, and Celery stored its end before that was published
    meta = get_app(settings).backend.get_task_meta(job_id)
    status = meta.get("status", states.PENDING)
    if status == states.PENDING:
        return job
    fields = _fields_from_celery(status, meta)
    if job is None:
        job = JobPublic(id=job_id, kind=meta.get("name") or "", **fields)
    else:
        job = job.model_copy(update=fields)
    if job.cancel_requested and job.state not in TERMINAL_JOB_STATES:
        job = job.model_copy(update={"state": "cancelling"})
    return job


def _fields_from_celery(status: str, meta: dict[str, Any]) -> dict[str, Any]:
    info = meta.get("result")
    done = meta.get("date_done")
    fields: dict[str, Any] = {"updated_at": done} if isinstance(done, datetime) else {}
    if status in (QUEUED, states.RETRY, states.RECEIVED):
        return fields | {"state": "queued", "progress": 0.0}
    if status == states.STARTED:
        return fields | {"state": "started", "progress": 0.0}
    if status == PROGRESS:
        info = info if isinstance(info, dict) else {}
        return fields | {"state": "progress", "progress": info.get("progress"), "message": info.get("message", "")}
    if status == states.SUCCESS:
        return fields | {"state": "succeeded", "progress": 1.0, "result": info if isinstance(info, dict) else {}}
    if status == states.REVOKED:
        return fields | {"state": "cancelled", "message": str(info or "cancelled")}
    error = error_result(type(info).__name__, str(info))
    return fields | {"state": "failed", "message": f"{error['error_type']}: {error['error']}", "result": error}
