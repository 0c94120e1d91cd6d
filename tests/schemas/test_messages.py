import json
import pytest
from pydantic import ValidationError

from schemas.messages import (
    MESSAGES,
    PARTITIONS,
    AdapterEvent,
    Candidate,
    CheckResult,
    DeadLetter,
    EvalResult,
    EvalScore,
    GenerateRequest,
    JobEvent,
    Verdict,
    sample_id_for,
)

EXAMPLES = [
    GenerateRequest(request_id="r1", family="arithmetic", difficulty=3, count=10),
    Candidate(sample_id="s1", family="arithmetic", difficulty=3, problem="1+2", answers=["3", "3"]),
    Verdict(sample_id="s1", family="arithmetic", accepted=True, label="3",
            checks=[CheckResult(name="format", passed=True, score=1.0, reason="ok")]),
    AdapterEvent(adapter_id="a1", base_model="builtin", path="/x", status="trained"),
    EvalResult(adapter_id="a1", suite="held-out", scores=[EvalScore(family="arithmetic", difficulty=3, accuracy=0.5, n=10)]),
    JobEvent(job_id="j1", kind="train_adapter", state="progress", progress=0.5),
    DeadLetter(source_topic="loop.candidates", partition=0, offset=1, consumer_group="g", raw_b64="", raw_size=0, error="bad"),
]


def test_every_topic_has_a_contract_and_an_example():
    assert set(MESSAGES) == set(PARTITIONS)
    assert {type(m).topic for m in EXAMPLES} == set(MESSAGES)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.topic)
def test_json_round_trip_keeps_every_field(message):
    again = type(message).model_validate_json(message.model_dump_json())
    assert again == message
    assert again.schema_version == (2 if isinstance(message, (Candidate, Verdict)) else 1)
    assert message.key()


def test_unknown_fields_and_versions_are_refused():
    payload = EXAMPLES[1].model_dump(mode="json")
    with pytest.raises(ValidationError):
        Candidate.model_validate({**payload, "surprise": 1})
    with pytest.raises(ValidationError):
        Candidate.model_validate({**payload, "schema_version": 3})


def test_sample_id_is_a_content_hash():
    assert sample_id_for("arithmetic", "1+2") == sample_id_for("arithmetic", "1+2")
    assert sample_id_for("arithmetic", "1+2") != sample_id_for("arithmetic", "2+1")
    assert sample_id_for("arithmetic", "1+2") != sample_id_for("grounded", "1+2")


def test_a_candidate_written_before_related_problems_is_still_read():
    old = {k: v for k, v in EXAMPLES[1].model_dump(mode="json").items() if k != "related"} | {"schema_version": 1}
    again = Candidate.model_validate_json(json.dumps(old))
    assert again.schema_version == 1 and again.related == []


def test_a_verdict_written_before_rounds_is_still_read_with_no_round():
    verdict = next(m for m in EXAMPLES if isinstance(m, Verdict))
    old = {k: v for k, v in verdict.model_dump(mode="json").items() if k != "round"} | {"schema_version": 1}
    again = Verdict.model_validate_json(json.dumps(old))
    assert again.schema_version == 1 and again.round is None
