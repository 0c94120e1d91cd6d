from datetime import datetime, timedelta, timezone

from sqlmodel import Session

from loop.status import read_status
from schemas.tables import Job
from services.settings import Settings
from services.store.db import open_store


def test_the_live_line_shows_the_job_that_is_running(tmp_path):
    settings = Settings(data_dir=tmp_path)
    engine = open_store(settings)
    assert "job" not in read_status(settings, engine).line()

    now = datetime.now(timezone.utc)
    with Session(engine) as session:
        session.add(Job(id="old", kind="evaluate_adapter", state="succeeded", progress=1.0,
                        created_at=now - timedelta(minutes=9)))
        session.add(Job(id="new", kind="train_adapter", state="progress", progress=0.42,
                        message="step 250/600, loss 0.3100", created_at=now))
        session.commit()
    line = read_status(settings, engine).line()
    assert "| job train_adapter 42% step 250/600, loss 0.3100 |" in line

    with Session(engine) as session:
        session.get(Job, "new").state = "succeeded"
        session.add(Job(id="next", kind="evaluate_adapter", state="queued", created_at=now + timedelta(seconds=1)))
        session.commit()
    assert "| job evaluate_adapter queued |" in read_status(settings, engine).line()
