"""Job payloads are validated where a job is submitted: a typo fails the request before anything is queued."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.jobs import JOB_REQUESTS, EvaluateAdapterRequest, TrainAdapterRequest
from services.jobs import submit_job
from services.settings import Settings


def test_every_loop_job_has_a_request_model():
    assert set(JOB_REQUESTS) == {"train_adapter", "evaluate_adapter"}
    assert TrainAdapterRequest(families=["arithmetic"], lora={"steps": 3}).model_dump(exclude_unset=True) == {
        "families": ["arithmetic"], "lora": {"steps": 3}}
    with pytest.raises(ValidationError, match="difficulties"):
        EvaluateAdapterRequest(adapter_id=None, difficulties=[])


@pytest.mark.parametrize(("kind", "kwargs", "field"), [
    ("train_adapter", {"famlies": ["arithmetic"]}, "famlies"),
    ("train_adapter", {"max_staleness": -1}, "max_staleness"),
    ("evaluate_adapter", {"adapter_id": "a", "difficulties": "3"}, "difficulties"),
])
def test_a_bad_argument_fails_at_submission_before_kafka_is_asked(tmp_path, kind, kwargs, field):
    nowhere = Settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")  # reaching it would fail differently
    with pytest.raises(ValidationError, match=field):
        submit_job(kind, kwargs, settings=nowhere)
