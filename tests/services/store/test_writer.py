"""The store writer: idempotent upserts, column ownership, crash safety and replay, on SQLite and PostgreSQL.

One module, because every test here runs the one writer against both stores through the same fixtures and events.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from sqlalchemy import Engine, func, select
from sqlmodel import SQLModel

from schemas.messages import (
    AdapterEvent,
    Candidate,
    CheckResult,
    DeadLetter,
    EvalResult,
    EvalScore,
    Evidence,
    JobEvent,
    Message,
    Verdict,
    sample_id_for,
)
from schemas.tables import Adapter, DeadLetterRecord, Job, Sample
from services.bus import Event, EventProducer, create_topics
from services.settings import Settings
from services.store import StoreWriter, open_store, upsert_events

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


# -- helpers -------------------------------------------------------------------------------------------------


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def candidate(i: int, *, created: float = 0.0, **changes) -> Candidate:
    problem = f"{i}+{i}="
    fields = dict(
        sample_id=sample_id_for("arithmetic", problem), family="arithmetic", difficulty=len(str(i)), problem=problem,
        answers=[str(2 * i), str(2 * i + 1)], adapter_id="a1", request_id="r1", round=1, true_answer=str(2 * i),
        meta={"i": i}, timings_ms={"generate": 1.5}, created_at=at(created),
    )  # fmt: skip
    return Candidate(**{**fields, **changes})


def verdict(i: int, *, accepted: bool = True, created: float = 1.0) -> Verdict:
    return Verdict(
        sample_id=sample_id_for("arithmetic", f"{i}+{i}="),
        family="arithmetic",
        accepted=accepted,
        label=str(2 * i) if accepted else None,
        checks=[CheckResult(name="self_consistency", passed=accepted, score=0.75, reason="3 of 4 agree")],
        evidence=[Evidence(id="passage-7", score=0.5)],
        created_at=at(created),
    )


def mixed_messages() -> list[Message]:
    """Every event type, with several events per row where that happens in the loop."""
    return [
        *(candidate(i) for i in range(20)),
        *(verdict(i, accepted=i % 3 != 0) for i in range(0, 20, 2)),
        verdict(25),  # a verdict whose candidate never came
        candidate(3, created=5.0, adapter_id="a2", round=2),  # the same problem generated again later
        AdapterEvent(adapter_id="a2", parent_id="a1", base_model="builtin", snapshot_id="s1", path="/ad/a2",
                     status="trained", metrics={"loss": 0.5}, config={"rank": 8}, created_at=at(10)),  # fmt: skip
        AdapterEvent(adapter_id="a2", base_model="builtin", path="/ad/a2", status="promoted", created_at=at(20)),
        EvalResult(adapter_id="a2", suite="heldout", created_at=at(15),
                   scores=[EvalScore(family="arithmetic", difficulty=3, accuracy=0.5, n=100)]),  # fmt: skip
        JobEvent(job_id="j1", kind="train_adapter", state="queued", created_at=at(1)),
        JobEvent(job_id="j1", kind="train_adapter", state="started", progress=0.1, created_at=at(2)),
        JobEvent(job_id="j1", kind="", state="cancelling", message="user asked", created_at=at(3)),
        JobEvent(job_id="j1", kind="train_adapter", state="cancelled", created_at=at(4)),
        JobEvent(job_id="j2", kind="evaluate_adapter", state="succeeded", progress=1.0, result={"acc": 0.5},
                 created_at=at(5)),  # fmt: skip
        JobEvent(job_id="j2", kind="", state="cancelling", created_at=at(6)),  # too late to matter
        DeadLetter(source_topic="loop.candidates", partition=3, offset=10_000, source_key="k", consumer_group="verifier",
                   raw_b64="AAE=", raw_size=2, error="not JSON", created_at=at(7)),  # fmt: skip
        DeadLetter(source_topic="loop.candidates", partition=3, offset=10_000, consumer_group="store-writer",
                   raw_b64="AAE=", raw_size=2, error="not JSON", created_at=at(8)),  # fmt: skip
    ]


def as_events(messages: Iterable[Message]) -> list[Event]:
    """The messages as a consumer would see them: one partition per topic, offsets in the given order."""
    offsets: dict[str, int] = {}
    events = []
    for message in messages:
        offset = offsets.get(message.topic, 0)
        offsets[message.topic] = offset + 1
        events.append(Event(message, message.topic, 0, offset, message.key().encode(), 0))
    return events


def apply(engine: Engine, messages: Iterable[Message]) -> None:
    with engine.begin() as connection:
        upsert_events(connection, as_events(messages))


def dump(engine: Engine) -> dict[str, list[dict]]:
    """Every row of every table, ordered by primary key."""
    rows = {}
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            query = select(table).order_by(*table.primary_key.columns)
            rows[table.name] = [dict(row._mapping) for row in connection.execute(query)]
    return rows


def count(engine: Engine, model) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model.__table__)).scalar_one()


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def produce(settings: Settings, messages: Iterable[Message]) -> None:
    with EventProducer(settings) as producer:
        for message in messages:
            producer.publish(message)
        producer.flush()


class WriterThread:
    """A StoreWriter running in a thread of the test, stopped (finish batch, commit) on exit."""

    def __init__(self, settings: Settings, engine: Engine, **options) -> None:
        self.writer = StoreWriter(settings, engine=engine, group_id=f"store-{uuid.uuid4().hex[:8]}", **options)
        self.thread = threading.Thread(target=self.writer.run, daemon=True)

    def __enter__(self) -> StoreWriter:
        self.thread.start()
        return self.writer

    def __exit__(self, *exc: object) -> None:
        self.writer.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the store writer did not stop"


def store_settings(settings: Settings, database_url: str) -> Settings:
    return settings.model_copy(update={"database_url": database_url})


def writer_env(settings: Settings, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "LOOP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LOOP_TOPIC_PREFIX": settings.topic_prefix,
        "LOOP_DATA_DIR": str(settings.data_dir),
        "LOOP_DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
    }


# -- upserts, no broker --------------------------------------------------------------------------------------


def test_applying_the_same_events_twice_gives_the_same_rows(database_url, make_database_url):
    engine = open_store(url=database_url)
    messages = mixed_messages()
    apply(engine, messages)
    once = dump(engine)
    apply(engine, messages)
    assert dump(engine) == once
    assert len(once["sample"]) == 21 and len(once["deadletterrecord"]) == 1

    # One batch folds several events of a row the way the database does one event at a time.
    one_by_one = open_store(url=make_database_url())
    for message in messages:
        apply(one_by_one, [message])
    assert dump(one_by_one) == once
    engine.dispose()
    one_by_one.dispose()


def test_a_verdict_before_its_candidate_gives_the_same_sample(database_url, make_database_url):
    verdict_first, candidate_first = open_store(url=database_url), open_store(url=make_database_url())
    apply(verdict_first, [verdict(7)])
    apply(verdict_first, [candidate(7)])
    apply(candidate_first, [candidate(7)])
    apply(candidate_first, [verdict(7)])
    assert dump(verdict_first) == dump(candidate_first)
    sample = dump(verdict_first)["sample"][0]
    assert (sample["status"], sample["label"], sample["problem"], sample["difficulty"]) == ("accepted", "14", "7+7=", 1)
    assert sample["answers"] == ["14", "15"] and sample["checks"][0]["name"] == "self_consistency"
    assert sample["generated_at"] == at(0) and sample["verdict_at"] == at(1)
    verdict_first.dispose()
    candidate_first.dispose()


def test_each_event_updates_only_the_columns_it_owns(database_url):
    engine = open_store(url=database_url)
    apply(engine, mixed_messages())
    rows = dump(engine)
    jobs = {job["id"]: job for job in rows["job"]}
    assert jobs["j1"]["state"] == "cancelled" and jobs["j1"]["cancel_requested"] is True
    assert jobs["j1"]["kind"] == "train_adapter" and jobs["j1"]["progress"] == 0.1
    assert jobs["j1"]["created_at"] == at(1) and jobs["j1"]["updated_at"] == at(4)
    # A cancel request after the end is recorded, but does not reopen the job.
    assert jobs["j2"]["state"] == "succeeded" and jobs["j2"]["cancel_requested"] is True
    assert jobs["j2"]["result"] == {"acc": 0.5}
    # Later job events never clear the flag.
    apply(engine, [JobEvent(job_id="j1", kind="train_adapter", state="failed", created_at=at(30))])
    assert dump(engine)["job"][0]["cancel_requested"] is True

    # "promoted" carries no lineage or metrics: what "trained" recorded stays, creation time too.
    [adapter] = rows["adapter"]
    assert (adapter["status"], adapter["parent_id"], adapter["snapshot_id"]) == ("promoted", "a1", "s1")
    assert adapter["metrics"] == {"loss": 0.5} and adapter["config"] == {"rank": 8}
    assert (adapter["created_at"], adapter["updated_at"]) == (at(10), at(20))

    samples = {sample["id"]: sample for sample in rows["sample"]}
    regenerated = samples[sample_id_for("arithmetic", "3+3=")]
    assert (regenerated["adapter_id"], regenerated["round"], regenerated["status"]) == ("a2", 2, "pending")
    orphan = samples[sample_id_for("arithmetic", "25+25=")]
    assert (orphan["status"], orphan["problem"], orphan["answers"]) == ("accepted", "", None)
    # The first dead letter of a message wins.
    assert rows["deadletterrecord"][0]["consumer_group"] == "verifier"
    assert rows["evalrecord"][0]["id"] == "a2:heldout"
    engine.dispose()


# -- against the broker --------------------------------------------------------------------------------------


def bad_inputs(settings: Settings) -> dict[str, bytes]:
    """The four unreadable messages and the reason each must be dead-lettered with."""
    good = json.loads(candidate(999).model_dump_json())
    return {
        "not JSON": b"\x00\x9f\xfe random bytes \xff",
        "does not match Candidate": json.dumps({"schema_version": 1, "sample_id": 5}).encode(),
        "unknown schema_version 99": json.dumps({**good, "schema_version": 99}).encode(),
        "exceeds the cap": json.dumps({**good, "problem": "x" * (settings.max_message_bytes + 10)}).encode(),
    }


@pytest.mark.kafka
def test_the_writer_stores_every_topic_and_dead_letters_with_reasons(settings, database_url, make_database_url):
    settings = store_settings(settings, database_url)
    create_topics(settings)
    engine = open_store(settings)
    messages = mixed_messages()
    produce(settings, messages[:10])
    sent = {}
    with EventProducer(settings) as producer:
        for reason, raw in bad_inputs(settings).items():
            sent[reason] = (raw, producer.publish_raw("loop.candidates", raw, key=reason.encode()).get(timeout=30))
    produce(settings, messages[10:])  # good messages after the bad ones are still consumed

    with WriterThread(settings, engine, batch_size=7) as writer:
        wait_until(lambda: store_is_complete(engine), timeout=60, what="every event and dead letter stored")
    assert writer.dead_lettered == 4

    rows = dump(engine)
    letters = {row["id"]: row for row in rows["deadletterrecord"]}
    for reason, (raw, where) in sent.items():
        letter = letters[f"loop.candidates:{where.partition}:{where.offset}"]
        assert reason in letter["error"], (reason, letter["error"])
        assert letter["consumer_group"] == writer.group_id and letter["source_key"] == reason
        assert letter["raw_size"] == len(raw)
        assert base64.b64decode(letter["raw_b64"]) == raw[: settings.dlq_raw_bytes]
    # Through the broker or applied directly, the same events give the same rows.
    direct = open_store(url=make_database_url())
    apply(direct, messages)
    expected = dump(direct)
    direct.dispose()
    assert {k: v for k, v in rows.items() if k != "deadletterrecord"} == {
        k: v for k, v in expected.items() if k != "deadletterrecord"
    }
    assert all(letter in rows["deadletterrecord"] for letter in expected["deadletterrecord"])
    engine.dispose()


def store_is_complete(engine: Engine) -> bool:
    """Whether everything ``mixed_messages`` and ``bad_inputs`` produce has landed."""
    with engine.connect() as connection:
        decided = connection.execute(select(func.count()).where(Sample.status != "pending")).scalar_one()
        promoted = connection.execute(select(func.count()).where(Adapter.status == "promoted")).scalar_one()
        final_jobs = connection.execute(select(func.count()).where(Job.state.in_(["cancelled", "succeeded"]))).scalar_one()
    return (decided, promoted, final_jobs, count(engine, Sample), count(engine, DeadLetterRecord)) == (11, 1, 2, 21, 5)


def run_store_command(settings: Settings, database_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.store", *args], env=writer_env(settings, database_url), cwd=REPO,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.kafka
def test_replaying_the_topics_into_an_empty_database_gives_the_same_rows(settings, database_url, make_database_url):
    settings = store_settings(settings, database_url)
    create_topics(settings)
    engine = open_store(settings)
    produce(settings, mixed_messages())
    with EventProducer(settings) as producer:
        for reason, raw in bad_inputs(settings).items():
            producer.publish_raw("loop.candidates", raw, key=reason.encode())
    with WriterThread(settings, engine):
        wait_until(lambda: store_is_complete(engine), timeout=60, what="every event and dead letter stored")
    original = dump(engine)

    refused = run_store_command(settings, database_url, "--replay")
    assert refused.returncode == 2 and "already has rows" in refused.stderr

    replay_url = make_database_url()
    replay = run_store_command(settings, replay_url, "--replay", "--idle-exit", "3")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replaying from the beginning" in replay.stderr
    rebuilt = open_store(url=replay_url)
    assert dump(rebuilt) == original
    rebuilt.dispose()
    engine.dispose()


def committed_candidates(settings: Settings, group_id: str) -> int:
    """How many loop.candidates messages the group has committed, over all partitions."""
    group_id = settings.group(group_id)  # consumers prefix their group like their topics
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="test-offsets")
    try:
        offsets = admin.list_group_offsets(group_id).get(group_id, {})
    finally:
        admin.close()
    topic = settings.topic("loop.candidates")
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


@pytest.mark.kafka
@pytest.mark.slow
def test_a_writer_killed_mid_batch_and_restarted_stores_every_sample_exactly_once(settings, database_url, tmp_path):
    total = 20_000
    settings = store_settings(settings, database_url)
    create_topics(settings)
    engine = open_store(settings)
    messages = [candidate(i) for i in range(total)]
    produce(settings, messages)

    group = f"store-writer-{uuid.uuid4().hex[:8]}"
    # A small batch, so that the kill falls among many transactions; the shortest session the broker allows,
    # so that the restarted writer does not wait long for the group to give up on the killed one.
    command = [sys.executable, "-m", "services.store", "--group-id", group, "--batch-size", "500",
               "--session-timeout-ms", "6000", "--progress-every", "1"]  # fmt: skip
    logs = [tmp_path / "writer-1.log", tmp_path / "writer-2.log"]

    def start(log: Path) -> subprocess.Popen:
        with open(log, "wb") as output:
            return subprocess.Popen(command, env=writer_env(settings, database_url), cwd=REPO, stdout=output,
                                    stderr=subprocess.STDOUT)  # fmt: skip

    first = start(logs[0])
    try:
        # Killed as soon as a transaction shows: right after a database commit, so either before that batch's
        # offsets are committed (it is delivered again onto rows already stored) or with the next batch in hand.
        wait_until(lambda: count(engine, Sample) >= 1500 or first.poll() is not None, timeout=90, interval=0.005,
                   what="the first writer to store some samples")  # fmt: skip
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, logs[0].read_text()[-3000:]
    stored_at_kill, committed_at_kill = count(engine, Sample), committed_candidates(settings, group)
    assert 0 < stored_at_kill < total, f"the kill came too late to test anything ({stored_at_kill} stored)"
    assert committed_at_kill <= stored_at_kill  # offsets are committed only after the rows

    second = start(logs[1])
    try:
        wait_until(lambda: count(engine, Sample) == total, timeout=120, interval=0.2,
                   what=f"all {total} samples after the restart")  # fmt: skip
        wait_until(lambda: committed_candidates(settings, group) == total, timeout=30, interval=0.2,
                   what="the restarted writer to commit every offset")  # fmt: skip
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
    assert second.returncode == 0, logs[1].read_text()[-3000:]

    with engine.connect() as connection:
        stored = connection.execute(select(Sample.id, Sample.problem)).all()
    assert len(stored) == total
    assert {row.id: row.problem for row in stored} == {m.sample_id: m.problem for m in messages}
    assert count(engine, DeadLetterRecord) == 0
    engine.dispose()
