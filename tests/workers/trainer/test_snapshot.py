"""Freezing snapshots by policy, and telling apart two snapshots frozen from the same samples in the same second."""

from datetime import datetime, timedelta, timezone

from sqlmodel import Session

from schemas.messages import SEED_REQUEST_PREFIX
from schemas.tables import Adapter, Sample
from services.settings import Settings
from services.store.db import open_store
from workers.trainer.snapshot import adapter_versions, freeze_snapshot, load_snapshot


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


def test_max_staleness_counts_promoted_versions_and_never_drops_imported_seeds(tmp_path):
    engine = open_store(Settings(data_dir=tmp_path))
    start = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
    with Session(engine) as session:
        for n, status in enumerate(["rolled_back", "promoted", "rejected", "promoted"], start=1):
            session.add(Adapter(id=f"a{n}", status=status, created_at=start + timedelta(minutes=n)))
        # versions: base 0, a1 1, a2 2, a4 3 (a3 was never promoted, so it is no version)
        for sample_id, adapter_id in [("s-base", None), ("s-a1", "a1"), ("s-a2", "a2"), ("s-a4", "a4")]:
            session.add(Sample(id=sample_id, family="arithmetic", status="accepted", label="1", adapter_id=adapter_id,
                               request_id="r1"))
        session.add(Sample(id="s-seed", family="arithmetic", status="accepted", label="1", adapter_id=None,
                           request_id=f"{SEED_REQUEST_PREFIX}seeds.jsonl"))
        session.commit()

    def kept(bound):
        return sorted(s.id for s in freeze_snapshot(engine, max_staleness=bound)[1])

    assert kept(None) == ["s-a1", "s-a2", "s-a4", "s-base", "s-seed"]
    assert kept(3) == ["s-a1", "s-a2", "s-a4", "s-base", "s-seed"]
    assert kept(1) == ["s-a2", "s-a4", "s-seed"]
    assert kept(0) == ["s-a4", "s-seed"]


def test_versions_follow_promotions_not_training_times(tmp_path):
    engine = open_store(Settings(data_dir=tmp_path))
    start = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
    with Session(engine) as session:
        # a2 was trained first but promoted last (a user promoted it after a1); a1 came back after a roll back
        session.add(Adapter(id="a2", status="promoted", created_at=start, promoted_at=start + timedelta(minutes=30)))
        session.add(Adapter(id="a1", status="rolled_back", created_at=start + timedelta(minutes=5),
                            promoted_at=start + timedelta(minutes=10)))
        session.add(Adapter(id="old", status="rolled_back", created_at=start - timedelta(minutes=5)))  # no promoted_at
        for sample_id, adapter_id in [("s-a1", "a1"), ("s-a2", "a2"), ("s-old", "old")]:
            session.add(Sample(id=sample_id, family="arithmetic", status="accepted", label="1", adapter_id=adapter_id))
        session.commit()
        assert adapter_versions(session) == {None: 0, "old": 1, "a1": 2, "a2": 3}
    assert sorted(s.id for s in freeze_snapshot(engine, max_staleness=0)[1]) == ["s-a2"]
