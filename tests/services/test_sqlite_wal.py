import multiprocessing
import sqlite3

from services.sqlite_wal import enable_wal

OPENERS = 4
FILES = 60


def _open(path, barrier, results):
    barrier.wait()
    try:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        enable_wal(connection, timeout_s=30)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY)")
        connection.execute("COMMIT")
        results.put("ok")
    except sqlite3.Error as exc:
        results.put(repr(exc))


def test_processes_opening_one_new_file_at_once_all_get_wal(tmp_path):
    # Plain "PRAGMA journal_mode=WAL" fails here with "database is locked" for a few percent of the openers.
    context = multiprocessing.get_context("fork")
    outcomes = []
    for n in range(FILES):
        path = tmp_path / f"{n}.sqlite"
        barrier, results = context.Barrier(OPENERS), context.Queue()
        procs = [context.Process(target=_open, args=(path, barrier, results)) for _ in range(OPENERS)]
        for proc in procs:
            proc.start()
        outcomes += [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join()
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert outcomes == ["ok"] * OPENERS * FILES
