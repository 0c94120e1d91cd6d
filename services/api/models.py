"""The API's request and response bodies (the tables' own ``*Public`` models where one fits as it is).

Stored JSON columns (checks, evidence, scores) are read through tolerant models here: a row written by an older
producer with a missing key still renders, instead of failing the response. One module, because these models are
the API's whole published schema (`/api/docs`), read together by whoever changes a route.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.tables import AdapterPublic, JobPublic, SampleBase

T = TypeVar("T")

SampleStatus = Literal["pending", "accepted", "rejected"]
SampleSort = Literal[
    "-generated_at",
    "generated_at",
    "-verdict_at",
    "verdict_at",
    "-difficulty",
    "difficulty",
    "-round",
    "round",
    "id",
    "-id",
]


class Page(BaseModel, Generic[T]):
    """One page of a listing: ``total`` rows match the filters, ``items`` are those from ``offset``."""

    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)


# -- samples ---------------------------------------------------------------------------------------------------


class SampleSummary(SampleBase):
    """A sample without its answers, checks and evidence (what a listing shows)."""

    answer_count: int = 0


class CheckOut(BaseModel):
    """One verifier check of a sample as stored (a Verdict's CheckResult): passed or not, its score and why."""

    name: str = ""
    passed: bool = False
    score: float | None = None
    reason: str = ""


class EvidenceItem(BaseModel):
    """A passage the verifier retrieved for a sample, with its similarity score."""

    id: str = ""
    score: float | None = None
    text: str | None = None


class Answer(BaseModel):
    """One of the k answers the generator gave, with how it relates to the label and the true answer."""

    index: int
    text: str
    chosen: bool = Field(description="It is the label the sample trains on.")
    correct: bool | None = Field(default=None, description="It equals the true answer (None where none is known).")


class AdapterRef(BaseModel):
    """An adapter named by a sample or a snapshot; ``id`` None is the base model."""

    id: str | None
    status: str | None = None


class Lineage(BaseModel):
    """Where a sample came from and where it went."""

    generated_by: AdapterRef = Field(description="The adapter that generated it (id None: the base model).")
    snapshots: list[str] = Field(description="Snapshots that froze it, oldest first.")
    trained_adapters: list[AdapterRef] = Field(description="Adapters trained on one of those snapshots.")


class SampleDetail(SampleBase):
    answers: list[Answer]
    checks: list[CheckOut]
    evidence: list[EvidenceItem]
    meta: dict[str, Any] = {}
    timings_ms: dict[str, float] = {}
    lineage: Lineage


# -- snapshots -------------------------------------------------------------------------------------------------


class SnapshotOut(BaseModel):
    id: str
    created_at: datetime | None = None
    size: int
    policy: dict[str, Any] | None = None
    adapters: list[str] = Field(default_factory=list, description="Adapters trained on this snapshot.")


class DifficultyCounts(BaseModel):
    difficulty: int
    base: int
    target: int
    added: int
    removed: int


class StatusCounts(BaseModel):
    status: str
    base: int
    target: int
    added: int
    removed: int


class SnapshotDiff(BaseModel):
    """What changed from snapshot ``base`` to snapshot ``target`` (samples listed up to ``limit`` each)."""

    base: str
    target: str
    base_size: int
    target_size: int
    added_total: int
    removed_total: int
    added: list[SampleSummary]
    removed: list[SampleSummary]
    by_difficulty: list[DifficultyCounts]
    by_status: list[StatusCounts] = Field(description="By the samples' current status in the store.")


# -- adapters --------------------------------------------------------------------------------------------------


class EvalScoreOut(BaseModel):
    family: str = ""
    difficulty: int = 0
    accuracy: float = 0.0
    n: int = 0


class AdapterOut(AdapterPublic):
    current: bool = Field(description="The generators use this adapter now.")
    round: int = Field(description="Its place in creation order (1 = the first adapter; 0 is the base model).")
    heldout: list[EvalScoreOut] = Field(default_factory=list, description="Its latest held-out evaluation.")
    mean_accuracy: float | None = None


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    force: bool = Field(default=False, description="Promote an adapter the promotion gate rejected.")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    to: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description='The adapter to return to: default the current adapter\'s parent; "base" for the base model.',
    )


class PublishedAdapterEvent(BaseModel):
    adapter_id: str
    status: str


class AdapterAction(BaseModel):
    """What a promote or roll back published; the store shows it once the store writer has applied it."""

    current_before: str | None
    current_after: str | None
    events: list[PublishedAdapterEvent]


# -- jobs ------------------------------------------------------------------------------------------------------


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments of the training job (schemas.jobs.TrainAdapterRequest, "
        'e.g. {"families": ["arithmetic"], "difficulties": [3, 4], "lora": {"steps": 300}}). '
        "parent_id and parent_path default to the current adapter. A name or type the job does not take is a 422.",
    )


class JobAccepted(BaseModel):
    job_id: str
    kind: str
    status_url: str
    kwargs: dict[str, Any]


class CancelAccepted(BaseModel):
    job_id: str
    cancel_requested: bool


JobOut = JobPublic


# -- metrics ---------------------------------------------------------------------------------------------------


class AccuracyPoint(BaseModel):
    round: int = Field(description="0: the base model; n: the n-th adapter created.")
    adapter_id: str
    adapter_status: str | None
    suite: str
    family: str
    difficulty: int
    accuracy: float
    n: int


class KeptPoint(BaseModel):
    round: int
    family: str
    kept: int = Field(description="Accepted samples of the round whose true answer is known.")
    right: int = Field(description="Of those, the ones labelled with the true answer (measurement only).")
    precision: float | None = Field(description="right / kept; None when nothing is known.")


class Throughput(BaseModel):
    window_s: int
    generated: int
    verified: int
    accepted: int
    generated_per_min: float
    verified_per_min: float
    accepted_per_min: float
    acceptance_rate: float | None = Field(description="Accepted share of the samples verified in the window.")
    totals: dict[str, int] = Field(description="All samples in the store, by status.")


class GroupLag(BaseModel):
    group: str
    topic: str
    lag: int | None = Field(description="Messages not yet committed by the group; None when it could not be read.")


class LagReport(BaseModel):
    available: bool
    error: str | None = None
    groups: list[GroupLag]


class Overview(BaseModel):
    current_adapter: AdapterRef
    round: int | None = Field(description="The latest round that generated samples.")
    difficulty: int | None = Field(description="The highest difficulty generated in that round.")
    throughput: Throughput
    adapters: int
    snapshots: int
    dead_letters: int
    jobs_running: int
    off_adapter: str = Field(default="", description="Samples of the window generated, five minutes or more after the "
                             "last promotion or roll back, with another adapter than the promoted one (a generator "
                             "that missed the change), e.g. 'a1 12 (promoted: a2)'; empty when there are none.")


# -- dead letters ----------------------------------------------------------------------------------------------


class DeadLetterOut(BaseModel):
    id: str
    source_topic: str
    partition: int
    offset: int
    source_key: str | None
    consumer_group: str
    error: str
    raw_size: int = Field(description="Size of the original message in bytes.")
    raw_b64: str = Field(description="Base64 of the kept bytes (the first bytes of the message).")
    raw_kept: int = Field(description="How many bytes were kept.")
    raw_text: str = Field(description="The kept bytes as text: invalid UTF-8 and control characters escaped.")
    raw_hex: str = Field(description="Hex dump of the first 256 kept bytes.")
    created_at: datetime | None


# -- imports ---------------------------------------------------------------------------------------------------


class ImportResult(BaseModel):
    imported: int
    sample_ids: list[str] = Field(description="The first 100 ids.")


class ErrorBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None
