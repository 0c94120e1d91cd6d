"""Jobs whose worker died while they ran, queued again by the next worker to start on the embedded broker.

With Redis, a job's message that a dead worker had taken comes back after the visibility timeout. kombu's
SQLAlchemy transport (the embedded default) has no such timeout: a message once taken stays hidden, so a job
whose worker was killed while it ran (a stop that outlasted the warm shutdown, the OOM killer, a power cut)
would stay "started" for ever, and whoever waits for it (the controller, for its round's adapter) would wait
for ever.

Celery's result store knows every job that started and the process that runs it (``pid`` and ``hostname`` in
the meta of STARTED, which Celery writes, and of PROGRESS, which ``JobContext.progress`` writes). A worker on
the embedded broker, before it takes any job, looks there for jobs started on this host by a process that no
longer exists, claims each with one conditional UPDATE (of two workers starting at once, one wins), and gives
the dead worker's message back to the queue (or sends it again where it is gone): its events go on (``queued``,
``started`` again), and a job that keeps its work by job id resumes it (``train_adapter`` from its last
checkpoint).

A worker can also die between taking a job's message and starting it (its main process killed with the job
prefetched), or take it while the store is down for longer than Celery's retries of ``STARTED`` wait. Then no
process ran it, the result store still says ``QUEUED``, and the message stays hidden. Every worker on the
embedded broker looks for such messages on a timer (``ReleaseStranded``): a job still queued whose newest message
this worker has seen taken, unchanged, for ``STRANDED_AFTER_S`` is given back: one conditional UPDATE claims it
(of two workers, one wins), the ``queued`` event is written, and a second UPDATE makes it visible to any worker.
A live worker writes ``STARTED`` within a second of taking a job (within SQLite's 30 s busy timeout under heavy
contention), so a live taker is not mistaken for a dead one; a job held for a countdown is left alone. Where the
broker is a SQLite file and no other jobs worker runs on the host (the embedded default), the only live taker is
the worker itself, which knows what it holds: it gives the others back after two ticks (``STRANDED_ALONE_S``).

One module, because both recoveries decide the same thing, whose a taken message is, from the same two records
(the result store's state and the broker's rows), and each must leave alone what the other gives back.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
from celery import Celery, states
from celery.worker import state as worker_state
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from schemas.messages import JobEvent
from services.jobs.app import _sqlite_path, broker_kind, queue_for
from services.jobs.steps import TimedStep
from services.jobs.lifecycle import PROGRESS, QUEUED, publish_job_event
from services.settings import Settings

log = logging.getLogger(__name__)

RUNNING = (states.STARTED, PROGRESS)
#: A job's message seen taken this long while the job is still queued has no live taker: a live worker writes
#: STARTED within a second, within SQLite's 30 s busy timeout at worst, or within 5 s of a store coming back.
STRANDED_AFTER_S = 45.0
#: The same where no other jobs worker runs on this host and the broker is a file here: no live taker but this
#: worker, which knows its own; two ticks, so that a message seen once in passing is not given back.
STRANDED_ALONE_S = 10.0
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
        held = newest_messages(app, {orphan.job_id}).get(orphan.job_id)
        if held is None:  # its message is gone (a purged queue): send it again
            app.send_task(orphan.kind, kwargs=orphan.kwargs, task_id=orphan.job_id, queue=orphan.queue)
        elif not held.visible and (claimed := claim_message(app, held.message_id, held.version)) is not None:
            show_message(app, held.message_id, claimed)  # the dead worker's own message, given back: one copy
        requeued.append(orphan.job_id)
    return requeued


@dataclass(frozen=True)
class Stranded:
    message_id: int
    version: int
    job_id: str
    kind: str
    queue: str
    taken_at: str  # kombu's stamp of the taking, in the broker host's local time (shown, never compared)


@dataclass(frozen=True)
class _Message:
    message_id: int
    version: int
    visible: bool
    stamped: object
    headers: dict
    queue: str


def newest_messages(app: Celery, job_ids: set[str]) -> dict[str, _Message]:
    """The newest message of each of ``job_ids`` on the embedded broker (a restore or a requeue adds a copy)."""
    newest: dict[str, _Message] = {}
    with _broker_engine(app).connect() as connection:
        rows = connection.execute(text(
            "SELECT m.id, m.version, m.visible, m.timestamp, m.payload, q.name FROM kombu_message m "
            "JOIN kombu_queue q ON q.id = m.queue_id ORDER BY m.id"))
        for message_id, version, visible, stamped, payload, queue in rows:
            headers = json.loads(payload).get("headers") or {}
            if headers.get("id") in job_ids:
                newest[headers["id"]] = _Message(message_id, version, bool(visible), stamped, headers, queue)
    return newest


def find_stranded(app: Celery) -> list[Stranded]:
    """Jobs the result store says are queued whose newest message is taken, and not held for a later start
    (``countdown``). A live taker starts its job at once, so these have a dead one, or one about to start:
    ``ReleaseStranded`` gives them time before it acts."""
    backend = app.backend
    session = backend.ResultSession()
    try:
        queued = {row.task_id for row in session.query(backend.task_cls.task_id)
                  .filter(backend.task_cls.status == QUEUED)}
    finally:
        session.close()
    if not queued:
        return []
    now = datetime.datetime.now(datetime.timezone.utc)
    return [Stranded(m.message_id, m.version, job_id, m.headers.get("task") or "", m.queue, str(m.stamped))
            for job_id, m in newest_messages(app, queued).items()
            if not m.visible and not _held_for_later(m.headers, now)]


def claim_message(app: Celery, message_id: int, version: int) -> int | None:
    """Take the right to give a hidden message back: its version moves on, so another worker that saw the old
    one cannot; returns the new version, or None when someone else moved it first."""
    with _broker_engine(app).begin() as connection:
        moved = connection.execute(
            text("UPDATE kombu_message SET version = version + 1 WHERE id = :id AND version = :version "
                 "AND visible = :hidden"), {"id": message_id, "version": version, "hidden": False}).rowcount
    return version + 1 if moved == 1 else None


def show_message(app: Celery, message_id: int, version: int) -> bool:
    """Make a claimed message visible again: the next free worker takes it."""
    with _broker_engine(app).begin() as connection:
        shown = connection.execute(
            text("UPDATE kombu_message SET visible = :visible, version = version + 1 WHERE id = :id "
                 "AND version = :version AND visible = :hidden"),
            {"visible": True, "hidden": False, "id": message_id, "version": version}).rowcount
    return shown == 1


def give_back(app: Celery, message_id: int, version: int, event: JobEvent) -> bool:
    """Claim a hidden message, say on ``loop.jobs`` that its job is queued again, then show it: the event is
    written before any worker can start the job, so the store never sees "queued" after "started"."""
    claimed = claim_message(app, message_id, version)
    if claimed is None:
        return False
    publish_job_event(event, app.loop_settings, wait=True)
    return show_message(app, message_id, claimed)


class StrandedWatch:
    """When this worker first saw each stranded message (by id and version, on its own monotonic clock); one is
    due once it has stayed stranded for ``after_s``. No wall clock is compared, so neither a clock change nor
    another host's clock can make a message due early."""

    def __init__(self, after_s: float = STRANDED_AFTER_S) -> None:
        self.after_s = after_s
        self.first_seen: dict[tuple[int, int], float] = {}

    def due(self, stranded: list[Stranded], now: float, after_s: float | None = None) -> list[Stranded]:
        after_s = self.after_s if after_s is None else after_s
        current = {(s.message_id, s.version): s for s in stranded}
        self.first_seen = {key: self.first_seen.get(key, now) for key in current}
        return [s for key, s in current.items() if now - self.first_seen[key] >= after_s]


class ReleaseStranded(TimedStep):
    """A worker step: on a timer, give back the messages of jobs whose taker died before it started them."""

    interval = STRANDED_TICK_S

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.watch = StrandedWatch()

    def tick(self, worker: Any) -> None:
        try:
            mine = {request.id for request in (*worker_state.active_requests, *worker_state.reserved_requests)}
            stranded = [s for s in find_stranded(worker.app) if s.job_id not in mine]
            alone = _sqlite_broker(worker.app) and not other_workers_here()
            due = self.watch.due(stranded, time.monotonic(), STRANDED_ALONE_S if alone else None)
        except Exception as exc:  # noqa: BLE001 - the store or the broker's database is down: look again later
            log.info("looking for stranded jobs failed: %s", exc)
            return
        for job in due:
            message = f"queued again on {job.queue}: taken at {job.taken_at} by a worker that never started it"
            event = JobEvent(job_id=job.job_id, kind=job.kind, state="queued", progress=0.0, message=message)
            try:
                if give_back(worker.app, job.message_id, job.version, event):
                    log.warning("job %s (%s): %s", job.job_id, job.kind, message)
            except Exception as exc:  # noqa: BLE001 - this one waits for a later tick; the others go on
                log.info("giving back job %s failed: %s", job.job_id, exc)


def other_workers_here() -> list[int]:
    """The main processes of the other jobs workers on this host (``python -m services.jobs worker``, ``loopctl jobs
    worker``, ``celery ... worker``); a pool's processes, children of one, are not counted. Anything that looks like
    one counts: a wrong guess only makes a release wait the longer time."""
    found: dict[int, int] = {}
    for process in psutil.process_iter(["pid", "ppid", "cmdline", "status"]):
        args = process.info["cmdline"] or []
        if process.info["status"] == psutil.STATUS_ZOMBIE or "worker" not in args:
            continue
        if any(a.endswith("services.jobs") or a == "jobs" or "celery" in a for a in args):
            found[process.info["pid"]] = process.info["ppid"]
    me = os.getpid()
    return [pid for pid, parent in found.items() if parent not in found and pid != me]


def _sqlite_broker(app: Celery) -> bool:
    """A broker that is a file on this host (every worker using it is here)."""
    return _sqlite_path(app.conf.broker_url.split("+", 1)[1]) is not None


def _held_for_later(headers: dict, now: datetime.datetime) -> bool:
    """Whether the message waits for its ``eta`` (a job submitted with a countdown): its taker holds it till then."""
    eta = headers.get("eta")
    if not eta:
        return False
    when = datetime.datetime.fromisoformat(eta)
    return (when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)) > now


def _broker_engine(app: Celery):
    return _engine(app.conf.broker_url.split("+", 1)[1], json.dumps(app.conf.broker_transport_options or {}))


@functools.cache
def _engine(url: str, options: str):
    # The broker's own options (SQLite's busy timeout); no pool, so no connection is kept across the pool's forks.
    return create_engine(url, poolclass=NullPool, **json.loads(options))
