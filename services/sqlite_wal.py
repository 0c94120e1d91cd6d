"""Opening one SQLite file from several processes at once."""

from __future__ import annotations

import sqlite3
import time

_FIRST_WAIT_S = 0.005
_LONGEST_WAIT_S = 0.2


def enable_wal(connection: sqlite3.Connection, timeout_s: float) -> None:
    """Switch ``connection``'s file to WAL (the mode is kept in the file), waiting up to ``timeout_s`` for others.

    Changing the journal mode takes an exclusive lock, and SQLite answers "database is locked" at once, without its
    busy handler, while another process is opening the same new file; so the change is retried here.
    """
    deadline = time.monotonic() + timeout_s
    wait = _FIRST_WAIT_S
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(2 * wait, _LONGEST_WAIT_S)
