"""Freezing snapshots by policy, and telling apart two snapshots frozen from the same samples in the same second."""

from datetime import datetime, timezone

from sqlmodel import Session

from schemas.tables import Sample
from services.settings import Settings
from services.store.db import open_store
from workers.trainer.snapshot import freeze_snapshot, load_snapshot


def _store(tmp_path):
    engine = open_store(Settings(data_dir=tmp_path))
    with Session(engine) as session:
        session.add(Sample(id="a", family="arithmetic", difficulty=2, status="accepted", label="3"))
        session.add(Sample(id="b", family="arithmetic", difficulty=3, status="accepted", label="7"))
        session.add(Sample(id="c", family="arithmetic", difficulty=3, status="rejected"))
        session.add(Sample(id="d", family="grounded", difficulty=1, status="accepted", label="I don't know"))
        session.commit()
    return engine


def test_a_snapshot_holds_the_accepted_samples_its_policy_allows(tmp_path):
    engine = _store(tmp_path)
    snapshot_id, samples = freeze_snapshot(engine, families=["arithmetic"])
    assert [s.id for s in samples] == ["a", "b"]
    assert [s.id for s in load_snapshot(engine, snapshot_id)] == ["a", "b"]
    _, samples = freeze_snapshot(engine, difficulties=[1, 3])
    assert [s.id for s in samples] == ["b", "d"]


def test_two_snapshots_of_the_same_samples_in_the_same_second_are_both_kept(tmp_path):
    engine = _store(tmp_path)
    moment = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
    first, _ = freeze_snapshot(engine, families=["arithmetic"], created_at=moment)
    second, _ = freeze_snapshot(engine, families=["arithmetic"], created_at=moment)
    assert first != second
    assert [s.id for s in load_snapshot(engine, first)] == [s.id for s in load_snapshot(engine, second)] == ["a", "b"]
