"""loopctl's job commands against a store in a temporary data directory (the embedded Celery backend)."""

from datetime import datetime, timezone

import pytest
from sqlmodel import Session

from loop.cli import main
from schemas.tables import Job
from services.settings import Settings, get_settings
from services.store.db import open_store


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOP_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()  # the process-wide settings, read again from this test's environment
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.parametrize("argv", [["jobs", "job-that-never-was", "--cancel"], ["jobs", "job-that-never-was"]])
def test_an_unknown_job_is_named_not_a_traceback(data_dir, capsys, argv):
    assert main(argv) == 1
    assert capsys.readouterr().out.strip() == "no job job-that-never-was"


def test_cancelling_a_job_that_ended_says_so_and_the_list_shows_it(data_dir, capsys):
    with Session(open_store(Settings(data_dir=data_dir))) as session:
        session.add(Job(id="j1", kind="train_adapter", state="succeeded", progress=1.0, message="done",
                        created_at=datetime.now(timezone.utc)))
        session.commit()
    assert main(["jobs", "j1", "--cancel"]) == 0
    assert capsys.readouterr().out.strip() == "the job has already ended"
    assert main(["jobs"]) == 0
    row = capsys.readouterr().out.split()
    assert row[:3] == ["j1", "train_adapter", "succeeded"] and "100%" in row
