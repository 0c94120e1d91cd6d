"""The Celery app, built from the settings: queues, routing, time limits, late acks, results in SQL.

Brokers (``Settings.broker_url``)::

    sqla+sqlite:////abs/data/celery-broker.sqlite   embedded default: kombu's SQLAlchemy transport, no server
    redis://redis:6379/0                             under compose

Results go to the SQL database of the store (``db+`` + ``Settings.store_url``): Celery's own tables
``celery_taskmeta`` and ``celery_tasksetmeta`` next to the loop's tables.

Queues: ``train`` (fine-tuning), ``eval`` (evaluation), ``default`` (everything else: exports, replays,
index rebuilds). A job is routed by its task name: a job registered with ``@job_task(queue=...)`` in
this process goes where it says, any other name by the patterns in ``NAME_ROUTES`` (so an API that
never imports torch can still send ``train_adapter`` to the ``train`` queue), the rest to ``default``.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import importlib.machinery
import importlib.util
import logging
import pkgutil
import sqlite3
import time
from pathlib import Path

from celery import Celery
from kombu import Exchange, Queue
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from services.settings import Settings, get_settings
from services.sqlite_wal import enable_wal

log = logging.getLogger(__name__)

QUEUES = ("train", "eval", "default")
DEFAULT_QUEUE = "default"

#: Routes for job names this process has not imported; the first matching pattern wins.
NAME_ROUTES: dict[str, str] = {"train_*": "train", "evaluate_*": "eval", "eval_*": "eval"}

#: Default limits of a job that sets none (``@job_task(soft_time_limit=..., time_limit=...)`` overrides them).
#: The soft limit raises ``SoftTimeLimitExceeded`` inside the job (it ends ``failed``); the hard limit kills
#: the worker's child process a minute later.
DEFAULT_SOFT_TIME_LIMIT_S = 6 * 3600
HARD_LIMIT_GRACE_S = 60
DEFAULT_TIME_LIMIT_S = DEFAULT_SOFT_TIME_LIMIT_S + HARD_LIMIT_GRACE_S
#: Redis redelivers a message nobody acknowledged within this time. With late acks a job is acknowledged
#: when it ends, so this must exceed the longest hard time limit or a long job would run twice.
MAX_JOB_SECONDS = 48 * 3600

#: Modules that define jobs, imported by every worker; ``workers/<role>/jobs.py`` are found on their own.
JOB_MODULES = ["services.jobs.tasks"]

SQLITE_BUSY_TIMEOUT_S = 30.0

_routes: dict[str, str] = {}


def register_route(task_name: str, queue: str) -> None:
    """Send ``task_name`` to ``queue`` (``@job_task`` calls this); a name bound to another queue raises."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r} for job {task_name!r}; the queues are {', '.join(QUEUES)}")
    bound = _routes.setdefault(task_name, queue)
    if bound != queue:
        raise ValueError(f"job {task_name!r} is already routed to queue {bound!r}, not {queue!r}")


def queue_for(task_name: str) -> str:
    """The queue a job of this name goes to."""
    if task_name in _routes:
        return _routes[task_name]
    for pattern, queue in NAME_ROUTES.items():
        if fnmatch.fnmatchcase(task_name, pattern):
            return queue
    return DEFAULT_QUEUE


def _route_task(name, args, kwargs, options, task=None, **kw) -> dict[str, str]:
    return {"queue": queue_for(name)}


def broker_kind(broker_url: str) -> str:
    """``sqla`` (the embedded transport), ``redis``, or the URL's scheme for anything else."""
    scheme = broker_url.split("://", 1)[0]
    if scheme.startswith(("sqla+", "sqlalchemy+")):
        return "sqla"
    if scheme in ("redis", "rediss"):
        return "redis"
    return scheme


def _sqlite_path(sqlalchemy_url: str) -> Path | None:
    parsed = make_url(sqlalchemy_url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def _prepare_sqlite_file(path: Path) -> None:
    """Create the file's directory and switch the file to WAL (persistent in the file): the worker's polling
    and a producer's inserts then never block the readers, and writers wait ``busy_timeout`` for each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        enable_wal(connection, SQLITE_BUSY_TIMEOUT_S)
    finally:
        connection.close()


def _broker_options(settings: Settings) -> dict:
    kind = broker_kind(settings.broker_url)
    if kind == "sqla":
        # kombu hands these to create_engine, so nothing else may be in here (not even polling_interval).
        sqlalchemy_url = settings.broker_url.split("+", 1)[1]
        path = _sqlite_path(sqlalchemy_url)
        if path is not None:
            _prepare_sqlite_file(path)
            return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
        return {"pool_pre_ping": True}
    if kind == "redis":
        return {"visibility_timeout": MAX_JOB_SECONDS}
    return {}


BACKEND_RETRIES = 60  # writes of a job's state retried through a store outage (see make_app)


def _result_backend(settings: Settings) -> tuple[str, dict]:
    store_url = settings.store_url
    parsed = make_url(store_url)
    if parsed.drivername in ("postgresql", "postgres"):
        store_url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    path = _sqlite_path(store_url)
    if path is not None:
        _prepare_sqlite_file(path)
        return f"db+{store_url}", {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
    return f"db+{store_url}", {"pool_pre_ping": True}


def make_app(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (default: the process's settings). Job tasks register on it by themselves."""
    settings = settings or get_settings()
    result_backend, engine_options = _result_backend(settings)
    exchange = Exchange("loop.jobs", type="direct")
    app = Celery("loop", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=_broker_options(settings),
        broker_connection_retry_on_startup=True,
        result_backend=result_backend,
        database_engine_options=engine_options,
        # The result backend is the store. A job taken while the store restarts must wait for it: a job whose
        # STARTED cannot be written fails in the pool, its message stays taken (the embedded broker has no
        # visibility timeout) and nothing runs it again. Backoff from 0.1 s to 5 s, about three minutes in all.
        result_backend_always_retry=True,
        result_backend_max_retries=BACKEND_RETRIES,
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=5000,
        result_extended=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        task_queues=[Queue(name, exchange, routing_key=name) for name in QUEUES],
        task_default_queue=DEFAULT_QUEUE,
        task_default_exchange=exchange.name,
        task_default_routing_key=DEFAULT_QUEUE,
        task_routes=(_route_task,),
        # A job is acknowledged when it ends, and a worker takes one job at a time: a job whose worker dies
        # goes back to the queue instead of being lost, and nothing waits behind a long job in a busy worker.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_track_started=True,
        task_soft_time_limit=DEFAULT_SOFT_TIME_LIMIT_S,
        task_time_limit=DEFAULT_TIME_LIMIT_S,
        worker_concurrency=1,
        imports=discover_job_modules(),
    )
    app.loop_settings = settings  # what the jobs of this app publish with and read the cancel flag from
    if broker_kind(settings.broker_url) == "sqla":
        _declare_sqla_queues(app)
    return app


def _declare_sqla_queues(app: Celery) -> None:
    """Create the SQLAlchemy transport's tables and queue rows once, under a file lock.

    kombu creates them on first use, and two processes doing that at once on a fresh database collide
    (a UNIQUE failure on ``kombu_queue.name``, "table already exists"): a producer's first job would be lost.
    """
    path = _sqlite_path(app.conf.broker_url.split("+", 1)[1])
    lock_path = path.with_name(path.name + ".lock") if path is not None else None
    with open(lock_path, "a+") if lock_path else contextlib.nullcontext() as lock_file:
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        for attempt in range(5):
            try:
                with app.connection_for_write() as connection:
                    channel = connection.default_channel
                    for queue in app.conf.task_queues:
                        queue(channel).declare()
                return
            except (IntegrityError, OperationalError) as exc:  # another database user won a race; look again
                if attempt == 4:
                    raise
                log.info("declaring the broker's queues again after %s", exc)
                time.sleep(0.2 * (attempt + 1))


@functools.cache
def _cached_app(settings_json: str) -> Celery:
    return make_app(Settings.model_validate_json(settings_json))


def get_app(settings: Settings | None = None) -> Celery:
    """The app for ``settings``, built once per distinct settings in this process."""
    settings = settings or get_settings()
    return _cached_app(settings.model_dump_json())


def discover_job_modules() -> list[str]:
    """``JOB_MODULES`` plus every ``workers/<role>/jobs.py`` that exists (the trainer's, the evaluator's ...)."""
    modules = list(JOB_MODULES)
    spec = importlib.util.find_spec("workers")
    if spec is not None and spec.submodule_search_locations:
        for role in pkgutil.iter_modules(spec.submodule_search_locations):
            finder = role.module_finder
            assert isinstance(finder, importlib.machinery.FileFinder)  # the search locations are directories
            if role.ispkg and (Path(finder.path) / role.name / "jobs.py").is_file():
                modules.append(f"workers.{role.name}.jobs")
    return modules
