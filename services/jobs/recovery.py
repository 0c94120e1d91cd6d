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

A worker can also die between taking a job's message and starting it (its main process killed with the job
prefetched), or take it while the store is down for longer than Celery's retries of ``STARTED`` wait. Then no
process ran it, the result store still says ``QUEUED``, and the message stays hidden. Every worker on the
embedded broker looks for such messages on a timer (``ReleaseStranded``): a job's newest message, hidden since
more than ``STRANDED_AFTER_S`` ago while the job is still queued, seen so on two ticks in a row, is made visible
again with one conditional UPDATE (its row's version must not have moved), and any worker takes it. A live
worker writes ``STARTED`` within a second of taking a job, so a live holder is never mistaken for a dead one.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from celery import Celery, bootsteps, states
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from schemas.messages import JobEvent
from services.jobs.app import broker_kind, queue_for
from services.jobs.lifecycle import PROGRESS, QUEUED, publish_job_event
from services.settings import Settings

log = logging.getLogger(__name__)

RUNNING = (states.STARTED, PROGRESS)
#: A job's message hidden this long while the job is still queued has no live holder (a live worker starts it
#: within a second, or within Celery's backoff of 5 s once the store is back).
STRANDED_AFTER_S = 20.0
STRANDED_TICK_S = 10.0
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


@dataclass(frozen=True)
class Stranded:
    message_id: int
    version: int
    job_id: str
    kind: str
    queue: str
    taken_at: datetime.datetime


def find_stranded(app: Celery, older_than_s: float = STRANDED_AFTER_S,
                  now: datetime.datetime | None = None) -> list[Stranded]:
    """Jobs still queued whose newest message on the embedded broker was taken over ``older_than_s`` ago."""
    now = now or datetime.datetime.now()  # kombu stamps a message when taken, in local time
    newest: dict[str, tuple] = {}
    with _broker_engine(app).connect() as connection:
        rows = connection.execute(text(
            "SELECT m.id, m.version, m.visible, m.timestamp, m.payload, q.name FROM kombu_message m "
            "JOIN kombu_queue q ON q.id = m.queue_id ORDER BY m.id"))
        for message_id, version, visible, taken_at, payload, queue in rows:
            headers = json.loads(payload).get("headers") or {}
            if headers.get("id"):  # a later copy (a restore, a requeue) replaces an earlier one
                newest[headers["id"]] = (message_id, version, visible, taken_at, headers.get("task") or "", queue)
    waiting = {job_id: row for job_id, row in newest.items()
               if not row[2] and row[3] is not None and (now - _as_datetime(row[3])).total_seconds() > older_than_s}
    if not waiting:
        return []
    backend = app.backend
    session = backend.ResultSession()
    try:
        queued = {row.task_id for row in session.query(backend.task_cls.task_id)
                  .filter(backend.task_cls.task_id.in_(list(waiting)), backend.task_cls.status == QUEUED)}
    finally:
        session.close()
    return [Stranded(row[0], row[1], job_id, row[4], row[5], _as_datetime(row[3]))
            for job_id, row in waiting.items() if job_id in queued]


def release(app: Celery, stranded: Stranded) -> bool:
    """Make the message visible again, unless its row changed since it was seen (someone else released it)."""
    with _broker_engine(app).begin() as connection:
        changed = connection.execute(
            text("UPDATE kombu_message SET visible = :visible, version = version + 1 "
                 "WHERE id = :id AND version = :version AND visible = :hidden"),
            {"visible": True, "hidden": False, "id": stranded.message_id, "version": stranded.version}).rowcount
    return changed == 1


class ReleaseStranded(bootsteps.StartStopStep):
    """A worker step: on a timer, give back the messages of jobs whose taker died before it started them."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        self.seen: set[tuple[int, int]] = set()  # (message id, version) seen stranded on the last tick

    def start(self, worker):
        self.tref = worker.timer.call_repeatedly(STRANDED_TICK_S, self.tick, (worker,), priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def tick(self, worker) -> None:
        try:
            stranded = find_stranded(worker.app)
        except Exception as exc:  # noqa: BLE001 - the store or the broker's database is down: look again later
            log.info("looking for stranded jobs failed: %s", exc)
            return
        current = {(s.message_id, s.version) for s in stranded}
        for job in stranded:
            if (job.message_id, job.version) not in self.seen or not release(worker.app, job):
                continue
            message = f"queued again on {job.queue}: taken at {job.taken_at:%H:%M:%S} by a worker that never started it"
            log.warning("job %s (%s): %s", job.job_id, job.kind, message)
            publish_job_event(JobEvent(job_id=job.job_id, kind=job.kind, state="queued", progress=0.0,
                                       message=message), worker.app.loop_settings)
        self.seen = current


def _broker_engine(app: Celery):
    return _engine(app.conf.broker_url.split("+", 1)[1])  # sqla+<SQLAlchemy URL>


@functools.cache
def _engine(url: str):
    return create_engine(url, poolclass=NullPool)  # no connection kept open across the pool's forks


def _as_datetime(value) -> datetime.datetime:
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
