"""Jobs whose worker died while they ran, queued again by the next worker to start on the embedded broker.

With Redis, a job's message that a dead worker had taken comes back after the visibility timeout. kombu's
SQLAlchemy transport (the embedded default) has no such timeout: a message once taken stays hidden, so a job
whose worker was killed while it ran (a stop that outlasted the warm shutdown, the OOM killer, a power cut)
would stay "started" for ever, and whoever waits for it (the controller, for its round's adapter) would wait
for ever.

Celery's result store knows every job that started and the process that runs it (``pid`` and ``hostname`` in
the meta of STARTED, which Celery writes, and of PROGRESS, which ``JobContext.progress`` writes). A worker on
the embedded broker, before it takes any job, looks there for jobs started on this host by a process that no
longer exists, claims each with one conditional UPDATE (of two workers starting at once, one wins), and queues
it again under its own id: its events go on (``queued``, ``started`` again), and a job that keeps its work by
job id resumes it (``train_adapter`` from its last checkpoint).
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from celery import Celery, states

from schemas.messages import JobEvent
from services.jobs.app import broker_kind, queue_for
from services.jobs.lifecycle import PROGRESS, QUEUED, publish_job_event
from services.settings import Settings

log = logging.getLogger(__name__)

RUNNING = (states.STARTED, PROGRESS)
_NODE_PID = re.compile(r"^jobs-(\d+)@")  # the default node name of ``python -m services.jobs worker``


@dataclass(frozen=True)
class Orphan:
    job_id: str
    kind: str
    kwargs: dict
    queue: str
    status: str  # the state it was left in (STARTED or PROGRESS)
    runner: str  # "<node name> pid <pid>": what ran it


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host: a zombie (killed, not yet reaped by its new parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: it exists
    return state not in ("Z", "X")


def find_orphans(app: Celery, host: str | None = None) -> list[Orphan]:
    """Jobs the result store says are running on ``host`` (default: this one) in a process that is gone."""
    host = host or socket.gethostname()
    backend = app.backend
    session = backend.ResultSession()
    try:
        ids = [row.task_id for row in session.query(backend.task_cls.task_id)
               .filter(backend.task_cls.status.in_(RUNNING))]
    finally:
        session.close()
    orphans = []
    for job_id in ids:
        meta = backend.get_task_meta(job_id)
        info = meta.get("result") if isinstance(meta.get("result"), dict) else {}
        node = info.get("hostname") or meta.get("worker") or ""
        pid = info.get("pid")
        if pid is None and (match := _NODE_PID.match(node)):
            pid = int(match.group(1))
        if pid is None or node.partition("@")[2] != host or process_alive(int(pid)):
            continue
        kind = meta.get("name") or info.get("kind") or ""
        queue = meta.get("queue") or queue_for(kind)
        orphans.append(Orphan(job_id, kind, dict(meta.get("kwargs") or {}), queue, meta["status"], f"{node} pid {pid}"))
    return orphans


def claim(app: Celery, orphan: Orphan) -> bool:
    """Move the job from the state it was left in to QUEUED, unless someone else did first."""
    backend = app.backend
    session = backend.ResultSession()
    try:
        claimed = (session.query(backend.task_cls)
                   .filter(backend.task_cls.task_id == orphan.job_id, backend.task_cls.status == orphan.status)
                   .update({backend.task_cls.status: QUEUED}, synchronize_session=False))
        session.commit()
    finally:
        session.close()
    return claimed == 1


def requeue_orphans(app: Celery, settings: Settings) -> list[str]:
    """Queue again every job whose process died while it ran (embedded broker only); returns their ids."""
    if broker_kind(settings.broker_url) != "sqla":
        return []  # Redis gives a dead worker's message back by itself, after its visibility timeout
    requeued = []
    for orphan in find_orphans(app):
        if not orphan.kind or not claim(app, orphan):
            continue
        message = f"queued again on {orphan.queue}: {orphan.runner} stopped while it ran"
        log.warning("job %s (%s): %s", orphan.job_id, orphan.kind, message)
        publish_job_event(JobEvent(job_id=orphan.job_id, kind=orphan.kind, state="queued", progress=0.0,
                                   message=message), settings, wait=True)
        request = SimpleNamespace(task=orphan.kind, args=[], kwargs=orphan.kwargs, hostname=None, retries=0,
                                  delivery_info={"routing_key": orphan.queue})
        app.backend.store_result(orphan.job_id, {"kind": orphan.kind, "progress": 0.0, "message": message}, QUEUED,
                                 request=request)
        app.send_task(orphan.kind, kwargs=orphan.kwargs, task_id=orphan.job_id, queue=orphan.queue)
        requeued.append(orphan.job_id)
    return requeued
