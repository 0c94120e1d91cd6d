"""A job's state written while the store (Celery's result backend) restarts waits for it instead of failing."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bench.faults import Postgres
from services.jobs.app import make_app
from services.settings import Settings

pytestmark = pytest.mark.postgres


def test_a_state_written_during_a_database_restart_lands_once_it_is_back(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="loop-test-pg-"))  # in /tmp: the server's user must reach its folder
    postgres = Postgres(root)
    postgres.start()
    restart = threading.Timer(4.0, postgres.start)
    try:
        app = make_app(Settings(data_dir=tmp_path, database_url=postgres.url))
        app.backend.store_result("before", {"progress": 0.0}, "SUCCESS")  # tables made, a connection pooled
        postgres.stop()
        restart.start()
        began = time.monotonic()
        app.backend.store_result("during", {"progress": 0.5}, "STARTED")  # raised BackendStoreError at once
        assert time.monotonic() - began >= 3.5
        assert app.backend.get_task_meta("during")["status"] == "STARTED"
    finally:
        if restart.is_alive():
            restart.join()  # the server is started again before it is stopped for good
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
