"""Fixtures for the store tests: each test runs on SQLite and on PostgreSQL.

PostgreSQL is a real server: ``LOOP_TEST_POSTGRES_URL`` when set (its user needs CREATEDB), else a throwaway
cluster started once per session with initdb and pg_ctl from the installed server binaries, in a temporary
directory, on a free port (as the ``postgres`` user when the tests run as root, since initdb refuses root).
Without server binaries the PostgreSQL cases are skipped, except on CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.store.db import normalize_url

PG_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin")


def find_pg_bin() -> Path | None:
    """The newest directory with PostgreSQL's initdb and pg_ctl (or the ones on PATH)."""
    candidates = [Path(p) for pattern in PG_BIN_GLOBS for p in glob.glob(pattern)]
    candidates.sort(key=lambda p: _version_key(p.parent.name if p.name == "bin" else p.name), reverse=True)
    on_path = shutil.which("initdb") or shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def _version_key(name: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in name).split()
    return tuple(int(d) for d in digits) or (0,)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, trusted local connections, no fsync: for tests only."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="loop-test-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.user_prefix: list[str] = []
        if os.geteuid() == 0:
            owner = _unprivileged_user()
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.user_prefix = ["runuser", "-u", owner.pw_name, "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://loop@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.user_prefix, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=self.root
        )
        if done.returncode != 0:
            log_tail = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{log_tail}")

    def start(self) -> "ThrowawayPostgres":
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "loop", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--locale=C",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run initdb as")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create databases in."""
    given = os.environ.get("LOOP_TEST_POSTGRES_URL")
    if given:
        yield normalize_url(given)
        return
    bin_dir = find_pg_bin()
    if bin_dir is None:
        message = "no PostgreSQL server binaries (initdb, pg_ctl) found and LOOP_TEST_POSTGRES_URL is unset"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the store tests on PostgreSQL")
        pytest.skip(f"{message}: install postgresql (apt-get install postgresql) to run these")
    server = ThrowawayPostgres(bin_dir).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store URL: a SQLite file in the test's directory, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    yield from _new_postgres_database(request.getfixturevalue("postgres_server_url"))


@pytest.fixture
def make_database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path):
    """A factory of further empty databases of the same kind as ``database_url`` (for replay comparisons)."""
    cleanups = []

    def make() -> str:
        if database_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'store-{uuid.uuid4().hex[:8]}.sqlite'}"
        generator = _new_postgres_database(request.getfixturevalue("postgres_server_url"))
        cleanups.append(generator)
        return next(generator)

    yield make
    for generator in cleanups:
        generator.close()


def _new_postgres_database(server_url: str) -> Iterator[str]:
    name = f"loop_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
