"""Fixtures for the API tests: the app on a real store (SQLite and PostgreSQL), its own Kafka topics, a store
writer, a standard dataset, and a job stack (a real Celery worker running a stand-in of the training job).

The PostgreSQL fixtures are the store tests' own (``tests/services/store/conftest.py``), loaded from that file:
a run of both folders starts one throwaway cluster for each.

One module, because pytest reads a folder's fixtures from its conftest, and these build on one another.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert

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
from schemas.tables import Snapshot, SnapshotMember
from services.api import create_app
from services.bus import create_topics
from services.settings import Settings
from services.store import StoreWriter, open_store, upsert_messages

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
TOKEN = "api-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RETRAIN_JOB = "api_test_retrain"
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def _load_store_fixtures():
    spec = importlib.util.spec_from_file_location("api_tests_store_fixtures", HERE.parent / "store" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_store_fixtures = _load_store_fixtures()
postgres_server_url = _store_fixtures.postgres_server_url
database_url = _store_fixtures.database_url
new_postgres_database = _store_fixtures._new_postgres_database


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return wait_until


# -- the app on one store ------------------------------------------------------------------------------------


@pytest.fixture
def api_settings(settings: Settings, database_url: str) -> Settings:
    return settings.model_copy(update={"database_url": database_url, "api_token": TOKEN})


@pytest.fixture
def topics(api_settings: Settings) -> Settings:
    """The test's topics exist (tests that publish ask for this)."""
    create_topics(api_settings)
    return api_settings


@pytest.fixture
def engine(api_settings: Settings):
    engine = open_store(api_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def client(api_settings: Settings, engine: Engine):
    app = create_app(api_settings, engine=engine, job_kinds={"retrain": RETRAIN_JOB})
    with TestClient(app) as test_client:
        yield test_client


# -- data ----------------------------------------------------------------------------------------------------


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class StoreData:
    """Writes rows the way the store writer would (the same upserts), and snapshots the way the trainer does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply(self, *messages: Message) -> None:
        by_type: dict[type[Message], list[Message]] = defaultdict(list)
        for message in messages:
            by_type[type(message)].append(message)
        with self.engine.begin() as connection:
            upsert_messages(connection, by_type)

    def snapshot(self, snapshot_id: str, sample_ids: list[str], *, created: float, policy: dict | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(Snapshot).values(
                    id=snapshot_id, created_at=at(created), size=len(sample_ids), policy=policy or {"families": []}
                )
            )
            if sample_ids:
                connection.execute(
                    insert(SnapshotMember), [{"snapshot_id": snapshot_id, "sample_id": s} for s in sample_ids]
                )

    def standard(self) -> Standard:
        standard = Standard()
        self.apply(*standard.messages())
        self.snapshot("s1", standard.s1, created=150)
        self.snapshot("s2", standard.s2, created=250)
        return standard


def arithmetic_sample(i: int, *, created: datetime | None = None) -> tuple[Candidate, Verdict | None]:
    """Sample i: difficulty 1 + i % 3, round i // 4, adapter by round; accepted if i is even, rejected if
    i % 4 == 1, pending (no verdict) if i % 4 == 3."""
    problem = f"{i}+{i}"
    sid = sample_id_for("arithmetic", problem)
    adapter = {0: None, 1: "a1"}.get(i // 4, "a2")
    moment = at(i) if created is None else created
    candidate = Candidate(
        sample_id=sid,
        family="arithmetic",
        difficulty=1 + i % 3,
        problem=problem,
        answers=[str(2 * i), str(2 * i + 1), str(2 * i)],
        adapter_id=adapter,
        request_id=f"r{i // 4}",
        round=i // 4,
        true_answer=str(2 * i),
        meta={"a": i, "b": i},
        timings_ms={"generate": 2.5},
        created_at=moment,
    )
    if i % 4 == 3:
        return candidate, None
    accepted = i % 2 == 0
    verdict = Verdict(
        sample_id=sid,
        family="arithmetic",
        accepted=accepted,
        label=str(2 * i) if accepted else None,
        checks=[
            CheckResult(name="format", passed=True, score=1.0, reason="digits only"),
            CheckResult(
                name="self_consistency",
                passed=accepted,
                score=0.67 if accepted else 0.34,
                reason="2 of 3 answers agree" if accepted else "no majority",
            ),
        ],
        created_at=moment + timedelta(seconds=0.5),
    )
    return candidate, verdict


@dataclass
class Standard:
    """A small loop history: 12 arithmetic samples over 3 rounds, 2 grounded ones, 4 adapters, 2 snapshots,
    evaluations of the base model and two adapters, a dead letter with hostile bytes, and two jobs."""

    arithmetic: list[str] = field(default_factory=list)
    grounded: list[str] = field(default_factory=list)
    s1: list[str] = field(default_factory=list)
    s2: list[str] = field(default_factory=list)
    hostile_raw: bytes = b"\x1b[31m<script>alert(1)</script>\xff\xfe\x00 evil \xe2\x80\xae txt"

    def messages(self) -> list[Message]:
        messages: list[Message] = []
        for i in range(12):
            candidate, verdict = arithmetic_sample(i)
            self.arithmetic.append(candidate.sample_id)
            messages += [candidate] + ([verdict] if verdict else [])
        for j, (question, answer, supported) in enumerate(
            [("where does Kavo live?", "Tesa", True), ("what does Mira farm?", "salt", False)]
        ):
            sid = sample_id_for("grounded", question)
            self.grounded.append(sid)
            messages.append(
                Candidate(
                    sample_id=sid,
                    family="grounded",
                    difficulty=1,
                    problem=question,
                    answers=[answer, answer],
                    adapter_id="a1",
                    round=1,
                    created_at=at(20 + j),
                )
            )
            messages.append(
                Verdict(
                    sample_id=sid,
                    family="grounded",
                    accepted=supported,
                    label=answer if supported else None,
                    checks=[
                        CheckResult(
                            name="evidence",
                            passed=supported,
                            score=0.91 if supported else 0.2,
                            reason="supported by p1" if supported else "no passage supports it",
                        )
                    ],
                    evidence=[Evidence(id="p1", score=0.91, text="Kavo lives in Tesa, by the <b>river</b>.")],
                    created_at=at(20.5 + j),
                )
            )
        a = self.arithmetic
        self.s1 = [a[0], a[2], self.grounded[0]]
        self.s2 = [a[2], a[4], a[6]]
        for adapter_id, parent, snapshot, created in (
            ("a1", None, "s1", 100),
            ("a2", "a1", "s2", 200),
            ("a3", "a2", "s2", 300),
            ("a4", "a2", "s2", 400),
        ):
            messages.append(
                AdapterEvent(
                    adapter_id=adapter_id,
                    parent_id=parent,
                    base_model="builtin",
                    snapshot_id=snapshot,
                    path=f"/data/adapters/{adapter_id}",
                    status="trained",
                    metrics={"final_loss": created / 1000, "examples": 3.0},
                    config={"lora": {"r": 8}},
                    created_at=at(created),
                )
            )
            if adapter_id in ("a1", "a2"):
                messages.append(
                    AdapterEvent(
                        adapter_id=adapter_id, base_model="", path="", status="promoted", created_at=at(created + 50)
                    )
                )
            if adapter_id == "a4":
                messages.append(
                    AdapterEvent(
                        adapter_id=adapter_id, base_model="", path="", status="rejected", created_at=at(created + 50)
                    )
                )
        for adapter_id, accuracies, created in (
            ("base", (0.9, 0.5, 0.1), 90),
            ("a1", (0.95, 0.7, 0.2), 160),
            ("a2", (0.97, 0.85, 0.4), 260),
        ):
            scores = [
                EvalScore(family="arithmetic", difficulty=d, accuracy=acc, n=100)
                for d, acc in zip((1, 2, 3), accuracies, strict=True)
            ]
            messages.append(EvalResult(adapter_id=adapter_id, suite="heldout", scores=scores, created_at=at(created)))
        messages.append(
            DeadLetter(
                source_topic="loop.candidates",
                partition=3,
                offset=42,
                source_key="k1",
                consumer_group="verifiers",
                raw_b64=base64.b64encode(self.hostile_raw).decode(),
                raw_size=10_000,
                error="not JSON: \x1b[2J <img src=x onerror=alert(1)>",
                created_at=at(30),
            )
        )
        messages.append(
            JobEvent(
                job_id="job-done",
                kind="train_adapter",
                state="succeeded",
                progress=1.0,
                result={"adapter_id": "a3"},
                created_at=at(300),
            )
        )
        messages.append(
            JobEvent(
                job_id="job-running",
                kind="train_adapter",
                state="progress",
                progress=0.4,
                message="step 4/10",
                created_at=at(500),
            )
        )
        return messages


@pytest.fixture
def store_data(engine: Engine) -> StoreData:
    return StoreData(engine)


@pytest.fixture
def standard(store_data: StoreData) -> Standard:
    return store_data.standard()


# -- a store writer ------------------------------------------------------------------------------------------


class WriterThread:
    """A StoreWriter in a thread of the test, stopped (finish batch, commit) at the end."""

    def __init__(self, settings: Settings, engine: Engine, group_id: str | None = None) -> None:
        self.writer = StoreWriter(
            settings,
            engine=engine,
            group_id=group_id or f"api-store-{uuid.uuid4().hex[:8]}",
            poll_timeout_ms=100,
            progress_every_s=None,
        )
        self.thread = threading.Thread(target=self.writer.run, daemon=True, name="store-writer")
        self.thread.start()

    def stop(self) -> None:
        self.writer.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the store writer did not stop"


@pytest.fixture
def start_store_writer(topics: Settings, engine: Engine):
    """``start_store_writer(group_id=None)``: a store writer on the test's topics and store, stopped at the end."""
    started: list[WriterThread] = []

    def start(group_id: str | None = None) -> StoreWriter:
        started.append(WriterThread(topics, engine, group_id))
        return started[-1].writer

    yield start
    for writer in started:
        writer.stop()


@pytest.fixture
def store_writer(topics: Settings, engine: Engine):
    writer = WriterThread(topics, engine)
    yield writer.writer
    writer.stop()


# -- a job stack: worker process, store writer, settings -----------------------------------------------------


@dataclass
class JobStack:
    settings: Settings
    engine: Engine
    worker: subprocess.Popen
    worker_log: Path
    writer: WriterThread
    standard: Standard | None = None

    def log(self) -> str:
        return self.worker_log.read_text(errors="replace")

    def env(self) -> dict[str, str]:
        """The LOOP_* environment of this stack (for more processes on it, such as the API server)."""
        return {
            **os.environ,
            "LOOP_DATA_DIR": str(self.settings.data_dir),
            "LOOP_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "LOOP_TOPIC_PREFIX": self.settings.topic_prefix,
            "LOOP_DATABASE_URL": self.settings.store_url,
            "LOOP_CELERY_BROKER_URL": self.settings.broker_url,
            "LOOP_API_TOKEN": TOKEN,
            "LOOP_MODEL_DIR": str(self.settings.data_dir / "tiny-model"),
            "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
        }


def save_tiny_model(directory: Path) -> None:
    """An untrained two-layer builtin model: enough for the real training job to run in seconds."""
    import torch

    from workers.model.builtin import BuiltinConfig, build_model
    from workers.model.tokenizer import build_tokenizer, save_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    build_model(BuiltinConfig(layers=2, hidden=32, heads=2, intermediate=64), tokenizer).save_pretrained(directory)
    save_tokenizer(tokenizer, directory)


def _start_job_stack(kafka_broker, data_dir: Path, database_url: str) -> JobStack:
    settings = Settings(
        data_dir=data_dir,
        kafka_bootstrap=kafka_broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        database_url=database_url,
        api_token=TOKEN,
        celery_broker_url=f"sqla+sqlite:///{data_dir / 'celery-broker.sqlite'}",
    )
    create_topics(settings)
    engine = open_store(settings)
    save_tiny_model(data_dir / "tiny-model")
    log_path = data_dir / "worker.log"
    stack = JobStack(settings, engine, None, log_path, WriterThread(settings, engine))  # type: ignore[arg-type]
    with open(log_path, "wb") as log:
        stack.worker = subprocess.Popen(
            [sys.executable, "-m", "services.jobs", "worker", "--include", "jobs_for_api_tests", "--loglevel", "INFO"],
            cwd=REPO,
            env=stack.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def ready() -> bool:
        if stack.worker.poll() is not None:
            raise AssertionError(f"the worker exited with {stack.worker.returncode}:\n{stack.log()[-4000:]}")
        return " ready." in stack.log()

    try:
        wait_until(ready, 180, "the jobs worker to be ready", interval=0.2)
    except BaseException:
        _stop_job_stack(stack)
        raise
    return stack


def _stop_job_stack(stack: JobStack) -> None:
    try:
        if stack.worker.poll() is None:
            stack.worker.terminate()
            try:
                stack.worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(stack.worker.pid, 9)
                stack.worker.wait()
    finally:
        stack.writer.stop()
        stack.engine.dispose()
        from services.jobs import close_publishers

        close_publishers()


@pytest.fixture(scope="session")
def job_stack_sqlite(kafka_broker, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("api-jobs-sqlite")
    stack = _start_job_stack(kafka_broker, data_dir, f"sqlite:///{data_dir / 'store.sqlite'}")
    yield stack
    _stop_job_stack(stack)


@pytest.fixture(scope="session")
def job_stack_postgresql(kafka_broker, tmp_path_factory, postgres_server_url):
    databases = new_postgres_database(postgres_server_url)
    stack = _start_job_stack(kafka_broker, tmp_path_factory.mktemp("api-jobs-pg"), next(databases))
    yield stack
    _stop_job_stack(stack)
    databases.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def job_stack(request) -> JobStack:
    """A worker that runs the stand-in retraining, on each kind of store (one per session and kind)."""
    return request.getfixturevalue(f"job_stack_{request.param}")


@pytest.fixture
def job_client(job_stack: JobStack):
    app = create_app(job_stack.settings, engine=open_store(job_stack.settings), job_kinds={"retrain": RETRAIN_JOB})
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def auth() -> dict[str, str]:
    """The Authorization header the test apps accept."""
    return dict(AUTH)


@pytest.fixture
def make_sample():
    """``make_sample(i, created=...)``: sample i of the standard arithmetic pattern, as (Candidate, Verdict or None)."""
    return arithmetic_sample


@pytest.fixture
def seeded_job_stack(job_stack_sqlite: JobStack) -> JobStack:
    """The SQLite job stack with the standard data in its store (written once per session)."""
    if job_stack_sqlite.standard is None:
        job_stack_sqlite.standard = StoreData(job_stack_sqlite.engine).standard()
    return job_stack_sqlite
