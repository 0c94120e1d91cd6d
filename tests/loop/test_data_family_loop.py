"""A family from a user's JSONL file through the verifier service on the real broker: a broken record is reported
and skipped, a checker that raises rejects its problem with the exception as the reason, and the verifier keeps
verifying the candidates after it."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import select

from schemas.messages import Candidate
from schemas.tables import Sample
from services.bus import EventProducer, create_topics
from services.store.db import open_store
from tasks import get_family

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CHECKER = (
    "def score(record, answer):\n"
    "    if record['question'] == 'What is 3 + 3?':\n"
    "        raise RuntimeError('no rule for threes')\n"
    "    return float(answer == record['answer']), 'against the reference'\n"
)


def test_the_verifier_service_runs_a_data_family_with_a_raising_checker(settings, services, tmp_path, wait_until,
                                                                         monkeypatch):
    lines = [json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) for i in range(8)]
    lines.insert(2, '{"question": "What is 1 + 1?", "answer": }')  # line 3: not JSON
    (tmp_path / "problems.jsonl").write_text("\n".join(lines))
    (tmp_path / "sums_checker.py").write_text(CHECKER)
    options = {"path": str(tmp_path / "problems.jsonl"), "checker": "sums_checker:score", "heldout_share": 0.0}
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"family": "jsonl", "family_options": options}))
    services.extra_env = {"PYTHONPATH": str(tmp_path)}
    create_topics(settings)
    services.start("store-writer", "services.store")
    services.start("verifier", "workers.verifier", "--agreement", "1.0", "--policy", str(policy))

    monkeypatch.syspath_prepend(str(tmp_path))
    family = get_family("jsonl", **options)
    (skipped,) = family.load_report()
    assert skipped.startswith(f"skipped {tmp_path / 'problems.jsonl'}:3: JSONDecodeError: Expecting value")
    problems = {p.canonical: p for p in family.make_problems(1, 10, random.Random(0))}
    order = ["What is 3 + 3?", "What is 4 + 4?", "What is 5 + 5?"]  # the raising one first, then two more
    producer = EventProducer(settings, client_id="test")
    for question, answer in zip(order, ["6", "8", "11"], strict=True):
        problem = problems[question]
        producer.publish(Candidate(sample_id=problem.sample_id, family="jsonl", difficulty=1, problem=question,
                                   answers=[family.write_answer(problem, answer)] * 2, meta=problem.data,
                                   true_answer=family.true_answer(problem)))
    producer.flush()
    producer.close()

    engine = open_store(settings)
    ids = [problems[q].sample_id for q in order]
    done = select(Sample.id).where(Sample.id.in_(ids), Sample.status != "pending")
    wait_until(lambda: len(scalar_rows(engine, done)) == 3, 240, "three verdicts", services)
    with engine.connect() as connection:
        rows = {r.id: r for r in connection.execute(select(Sample).where(Sample.id.in_(ids)))}
    raised, right, wrong = (rows[i] for i in ids)
    checker = {c["name"]: c for c in raised.checks}["checker"]
    assert raised.status == "rejected" and checker["reason"] == "checker raised RuntimeError: no rule for threes"
    assert right.status == "accepted" and right.label == "8"
    assert wrong.status == "rejected" and "checker scored 0 (below 0.5)" in {c["name"]: c for c in wrong.checks}[
        "checker"]["reason"]
    services.assert_alive()


def scalar_rows(engine, query) -> list:
    with engine.connect() as connection:
        return list(connection.execute(query).scalars())
