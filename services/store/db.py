"""The dataset store's database: an engine from a URL, the tables, and a session helper.

The embedded default is a SQLite file in the data directory, opened in WAL mode so that readers (the API, a
snapshot job) never block the store writer; PostgreSQL is reached through psycopg 3 for anything bigger::

    sqlite:////abs/path/store.sqlite                  (what ``Settings.store_url`` gives by default)
    postgresql://user:password@host:5432/loop         (rewritten to postgresql+psycopg://)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pydantic_core

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Session, SQLModel

import schemas.tables  # noqa: F401 - registers every table on SQLModel.metadata
from services.settings import Settings
from services.sqlite_wal import enable_wal

log = logging.getLogger(__name__)

#: How long a SQLite connection waits for another writer's lock before "database is locked" (a retryable error).
SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalize_url(url: str) -> str:
    """Pick the project's drivers: psycopg 3 for PostgreSQL whichever way the URL spells it."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; a SQLite file gets its parent directory created and the writer-friendly pragmas."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, json_serializer=json_text, connect_args={"check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # UTF-8 on the wire whatever the database's encoding: psycopg hands out bytes, not text, on a SQL_ASCII
    # database (an initdb without a UTF-8 locale makes one), which nothing above the driver expects.
    return create_engine(url, echo=echo, json_serializer=json_text, pool_pre_ping=True,
                         connect_args={"client_encoding": "utf8"})


def json_text(value: object) -> str:
    """JSON columns are written by pydantic-core: compact, and several times faster than json.dumps per row."""
    return pydantic_core.to_json(value).decode()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers and the writer do not block each other; NORMAL: durable at checkpoints, safe against
        # corruption, and a commit costs no fsync (a crash can lose the last commits only on power loss, and
        # the offsets committed after them are then re-read: nothing is lost for the loop).
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        enable_wal(dbapi_connection, SQLITE_BUSY_TIMEOUT_MS / 1000)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_tables(engine: Engine) -> None:
    """Create the tables that do not exist yet (idempotent; two processes starting at once are fine)."""
    try:
        SQLModel.metadata.create_all(engine)
    except (IntegrityError, ProgrammingError, OperationalError) as exc:
        # Another process created the same table between our check and our CREATE
        # (PostgreSQL says IntegrityError/ProgrammingError, SQLite OperationalError "already exists").
        if isinstance(exc, OperationalError) and "already exists" not in str(exc):
            raise
        log.info("tables created concurrently (%s); checking again", type(exc).__name__)
        SQLModel.metadata.create_all(engine)
    add_missing_columns(engine)


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the nullable columns a newer version of the tables declares to a store an older one created (``create_all``
    adds only missing tables), so that a user's store opens after an upgrade; returns ``table.column`` of each added.
    Every column added since the first release is nullable: its rows read NULL until events set it."""
    inspector = inspect(engine)
    added: list[str] = []
    for table in SQLModel.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"the store's table {table.name} lacks the required column {column.name}: "
                                   "rebuild it from the topics (loopctl store --replay into a new store)")
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
            except (ProgrammingError, OperationalError) as exc:  # another process added it first
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
                log.info("column %s.%s added concurrently (%s)", table.name, column.name, type(exc).__name__)
                continue
            log.info("store: added column %s.%s (%s)", table.name, column.name, kind)
            added.append(f"{table.name}.{column.name}")
    return added


def open_store(settings: Settings | None = None, *, url: str | None = None) -> Engine:
    """The engine of the configured store (``url`` overrides the settings), with its tables created."""
    if url is None:
        if settings is None:
            from services.settings import get_settings

            settings = get_settings()
        url = settings.store_url
    engine = make_engine(url)
    create_tables(engine)
    return engine


def is_empty(engine: Engine) -> bool:
    """Whether no table of the store holds a row (what a replay expects to start from)."""
    existing = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in existing and connection.execute(table.select().limit(1)).first() is not None:
                return False
    return True


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A SQLModel session that commits when the block ends normally and rolls back when it raises."""
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
