"""The payloads of the loop's Celery jobs, one pydantic model per job kind, validated where a job is submitted
(``services.jobs.submit_job``): a misspelt or mistyped argument fails the request, not the job minutes later."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ClassVar[str]


class TrainAdapterRequest(JobRequest):
    """``train_adapter``: freeze a snapshot of accepted samples and train a LoRA adapter on it."""

    kind: ClassVar[str] = "train_adapter"

    families: list[str] | None = Field(default=None, description="Families to train on (default: every one).")
    difficulties: list[int] | None = Field(default=None, description="Difficulties to train on (default: all).")
    max_staleness: int | None = Field(default=None, ge=0, description="Oldest samples, in adapter versions.")
    parent_id: str | None = Field(default=None, description="The adapter the new one descends from.")
    parent_path: str | None = Field(default=None, description="Its PEFT directory (init='parent' continues it).")
    family_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Options per family.")
    lora: dict[str, Any] = Field(default_factory=dict, description="Fields of the trainer's LoraTrainingConfig.")
    target: int | None = Field(default=None, ge=1, description="The difficulty the round aims at.")


class EvaluateAdapterRequest(JobRequest):
    """``evaluate_adapter``: the held-out suites of one family for an adapter (None: the base model)."""

    kind: ClassVar[str] = "evaluate_adapter"

    adapter_id: str | None
    path: str | None = None
    family: str = "arithmetic"
    difficulties: list[int] = Field(min_length=1)
    family_options: dict[str, Any] = Field(default_factory=dict)


JOB_REQUESTS: dict[str, type[JobRequest]] = {cls.kind: cls for cls in (TrainAdapterRequest, EvaluateAdapterRequest)}
