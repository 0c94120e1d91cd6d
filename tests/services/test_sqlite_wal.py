import multiprocessing
import sqlite3

from services.sqlite_wal import enable_wal

OPENERS = 4
FILES = 60


def _open_each(paths, barrier, results):
    """Open every file in turn, all openers at once (the barrier), and say how each open went."""
    for path in paths:
        barrier.wait(timeout=60)
        try:
            connection = sqlite3.connect(path, timeout=30, isolation_level=None)
            enable_wal(connection, timeout_s=30)
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY)")
            connection.execute("COMMIT")
            connection.close()
            results.put("ok")
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            results.put(repr(exc))


def test_processes_opening_one_new_file_at_once_all_get_wal(tmp_path):
    # Plain "PRAGMA journal_mode=WAL" fails here with "database is locked" for a few percent of the openers.
    # Spawned, not forked: the test process has other tests' threads, and a fork can copy a lock one of them held.
    context = multiprocessing.get_context("spawn")
    paths = [tmp_path / f"{n}.sqlite" for n in range(FILES)]
    barrier, results = context.Barrier(OPENERS), context.Queue()
    procs = [context.Process(target=_open_each, args=(paths, barrier, results)) for _ in range(OPENERS)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in range(OPENERS * FILES)]
    for proc in procs:
        proc.join(timeout=60)
    assert outcomes == ["ok"] * OPENERS * FILES
    assert all(sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",) for path in paths)
