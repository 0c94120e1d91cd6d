from datetime import datetime, timedelta, timezone

from sqlmodel import Session

from loop.status import kept_precision, plot_rounds, read_status, rounds_table
from schemas.messages import CONSUMER_GROUPS
from schemas.tables import Adapter, Job, Sample
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


def test_the_kept_labels_right_show_live_and_a_round_below_the_bound_is_flagged(tmp_path):
    settings = Settings(data_dir=tmp_path)
    engine = open_store(settings)
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "controller.json").write_text('{"round": 3, "target": 6}')
    with Session(engine) as session:
        for i in range(20):  # round 3: 19 of 20 kept labels right; a rejected one and another round do not count
            session.add(Sample(id=f"s{i}", family="arithmetic", round=3, status="accepted", true_answer=str(i),
                               label=str(i) if i else "x"))
        session.add(Sample(id="r", family="arithmetic", round=3, status="rejected", true_answer="1", label=None))
        session.add(Sample(id="o", family="arithmetic", round=2, status="accepted", true_answer="1", label="2"))
        session.commit()
    assert "| kept right 0.950 |" in read_status(settings, engine).line()
    assert kept_precision(engine, family="arithmetic", round_no=3) == (20, 19)
    rounds = [{"round": 1, "target": 5, "adapter_id": "a1", "promoted": True, "accepted": 10, "mastered": 5,
               "scores": {"5": 0.99}, "kept_right": 0.99, "contradicted": 0.1, "precision_bound": 0.95},
              {"round": 2, "target": 6, "adapter_id": "a2", "promoted": False, "accepted": 10, "mastered": 5,
               "scores": {"5": 0.98}, "kept_right": 0.8, "contradicted": 0.3, "precision_bound": 0.95,
               "init": "parent"}]
    table = rounds_table(rounds).splitlines()
    assert "0.990 " in table[1] and "!" not in table[1] and "0.800!" in table[2] and "0.300" in table[2]
    assert " - " in table[1] and " parent " in table[2]  # a row before init was recorded, and one that continued
    assert plot_rounds(rounds, tmp_path / "rounds.png").stat().st_size > 0


def test_the_status_line_reports_the_lag_of_every_topic_of_every_group(tmp_path):
    class Lags:  # one lag per (group, topic), as a LagMonitor answers
        def __init__(self):
            self.asked = []

        def lag(self, group, topic):
            self.asked.append((group, topic))
            return 1

        def consumed(self, group):
            return group != "index-updater"  # an arithmetic loop runs no index updater

    monitor = Lags()
    line = read_status(Settings(data_dir=tmp_path), open_store(Settings(data_dir=tmp_path)), monitor).line()
    running = {g: topics for g, topics in CONSUMER_GROUPS.items() if g != "index-updater"}
    assert sorted(monitor.asked) == sorted((g, t) for g, topics in running.items() for t in topics)
    assert line.endswith("lag " + " ".join(f"{g}={len(topics)}" if g in running else f"{g}=-"
                                           for g, topics in CONSUMER_GROUPS.items()))


def test_a_generator_still_on_another_adapter_than_the_promoted_one_is_named(tmp_path):
    settings = Settings(data_dir=tmp_path)
    engine = open_store(settings)
    now = datetime.now(timezone.utc)
    with Session(engine) as session:
        session.add(Adapter(id="a1", status="rolled_back", updated_at=now - timedelta(minutes=20)))
        session.add(Adapter(id="a2", status="promoted", updated_at=now - timedelta(minutes=10)))
        rows = [("on", "a2", now, "r"), ("off", "a1", now - timedelta(seconds=10), "r"),
                ("off-base", None, now - timedelta(seconds=20), "r"),
                ("seed", None, now, "seed:seeds.jsonl"),              # imported: no model generated it
                ("old", "a1", now - timedelta(minutes=4), "r")]       # before the status window
        for sample_id, adapter_id, moment, request in rows:
            session.add(Sample(id=sample_id, adapter_id=adapter_id, generated_at=moment, request_id=request))
        session.commit()
    line = read_status(settings, engine).line()
    assert "| generated off the promoted adapter: a1 1, base 1 (promoted: a2) |" in line

    with Session(engine) as session:  # a promotion a moment ago: generators are given time to follow it
        session.get(Adapter, "a2").updated_at = now - timedelta(minutes=2)
        session.commit()
    assert "off the promoted" not in read_status(settings, engine).line()
