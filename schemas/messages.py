"""The contracts: one pydantic model per Kafka topic.

Every message carries ``schema_version``; a consumer that meets a version it does not know
sends the message to the dead-letter topic instead of guessing. Timestamps travel inside the
messages (never taken from the database clock), so replaying the topics rebuilds the same rows.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1

# The share of a round's kept labels that must be right (where the truth is known, measured, never deciding) for the
# round not to be flagged: the default of the policy's precision_bound, and the line on the dashboard's chart.
PRECISION_BOUND = 0.95


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def sample_id_for(family: str, canonical_problem: str) -> str:
    """A content hash of (family, canonical problem): the same problem is the same sample."""
    digest = hashlib.sha256(f"{family}\x1f{canonical_problem}".encode()).hexdigest()
    return digest[:32]


class Message(BaseModel):
    """Base of every topic message: strict fields, a schema version, a partition key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: ClassVar[str]
    schema_version: Literal[1] = SCHEMA_VERSION

    def key(self) -> str:
        """The partition key: all events of one entity stay in one partition, in order."""
        raise NotImplementedError


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(default=4, ge=1, le=64, description="Answers generated per problem.")
    temperature: float = Field(default=0.7, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    greedy_first: bool = Field(default=True, description="The first of the k answers is greedy.")


class GenerateRequest(Message):
    topic: ClassVar[str] = "loop.generate"

    request_id: str
    family: str
    difficulty: int = Field(ge=0)
    count: int = Field(ge=1, le=100_000)
    adapter_id: str | None = None
    round: int = Field(default=0, ge=0)
    sampling: Sampling = Sampling()
    created_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return self.request_id


class RelatedAnswers(BaseModel):
    """The model's answers to a problem related to the candidate's (a metamorphic relation its family declares)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relation: str = Field(description="The kind of relation, a name the family declares (shifted_pair ...).")
    problem: str = Field(description="The related problem in canonical form.")
    answers: list[str] = Field(description="The completions, one greedy answer per rendering.")


class Candidate(Message):
    topic: ClassVar[str] = "loop.candidates"
    # 2: carries the answers to the family's related problems; a 1 (written before) has none and is still read.
    schema_version: Literal[1, 2] = 2  # type: ignore[assignment]

    sample_id: str
    family: str
    difficulty: int = Field(ge=0)
    problem: str
    answers: list[str]
    related: list[RelatedAnswers] = Field(default_factory=list, description="Answers to the family's relatives of the problem.")
    adapter_id: str | None = None
    request_id: str | None = None
    round: int = Field(default=0, ge=0)
    true_answer: str | None = Field(default=None, description="Recorded for measurement; never decides acceptance unless oracle mode is on.")
    meta: dict[str, Any] = Field(default_factory=dict)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return self.sample_id


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    passed: bool
    score: float
    reason: str


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    score: float
    text: str | None = None


class Verdict(Message):
    topic: ClassVar[str] = "loop.verdicts"
    # Version 2 carries the candidate's round; a version-1 verdict reads with round None.
    schema_version: Literal[1, 2] = 2  # type: ignore[assignment]

    sample_id: str
    family: str
    accepted: bool
    round: int | None = Field(default=None, ge=0, description="The round of the candidate (None: not known).")
    label: str | None = Field(default=None, description="The answer chosen to train on, when accepted.")
    checks: list[CheckResult] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return self.sample_id


AdapterStatus = Literal["trained", "promoted", "rejected", "rolled_back"]


# The request id of a sample imported from a file (``loopctl import``) starts so: no model generated it.
SEED_REQUEST_PREFIX = "seed:"


class AdapterEvent(Message):
    topic: ClassVar[str] = "loop.adapters"

    adapter_id: str
    parent_id: str | None = None
    base_model: str
    snapshot_id: str | None = None
    path: str
    status: AdapterStatus
    metrics: dict[str, float] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return self.adapter_id


class EvalScore(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str
    difficulty: int
    accuracy: float = Field(ge=0.0, le=1.0)
    n: int = Field(ge=0)


class EvalResult(Message):
    topic: ClassVar[str] = "loop.evals"

    adapter_id: str
    suite: str
    scores: list[EvalScore]
    created_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return self.adapter_id


JobState = Literal["queued", "started", "progress", "succeeded", "failed", "cancelling", "cancelled"]
TERMINAL_JOB_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})  # a job in one never runs again
ACTIVE_JOB_STATES: tuple[str, ...] = ("queued", "started", "progress")  # waiting for a worker, or running


class JobEvent(Message):
    topic: ClassVar[str] = "loop.jobs"

    job_id: str
    kind: str
    state: JobState
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    message: str = ""
    result: dict[str, Any] | None = None
    created_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return self.job_id


class DeadLetter(Message):
    topic: ClassVar[str] = "loop.dlq"

    source_topic: str
    partition: int
    offset: int
    source_key: str | None = None
    consumer_group: str
    raw_b64: str = Field(description="Base64 of the first bytes of the message, capped.")
    raw_size: int = Field(ge=0)
    error: str
    created_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        return self.source_key or f"{self.source_topic}:{self.partition}:{self.offset}"


MESSAGES: dict[str, type[Message]] = {
    model.topic: model
    for model in (GenerateRequest, Candidate, Verdict, AdapterEvent, EvalResult, JobEvent, DeadLetter)
}

# The loop's consumer groups and the topics each reads: the one declaration the workers subscribe from, and that
# `loopctl status` and the API's lag report.
CONSUMER_GROUPS: dict[str, tuple[str, ...]] = {
    "store-writer": (Candidate.topic, Verdict.topic, AdapterEvent.topic, EvalResult.topic, JobEvent.topic,
                     DeadLetter.topic),
    "verifiers": (Candidate.topic,),
    "generators": (GenerateRequest.topic,),
    "controller": (Verdict.topic, AdapterEvent.topic, EvalResult.topic, JobEvent.topic),
    "index-updater": (Candidate.topic, Verdict.topic),
}

# Partition counts: the data plane is parallel (several generators and verifiers share it);
# the control topics are low volume and keep a single total order.
PARTITIONS: dict[str, int] = {
    "loop.generate": 4,
    "loop.candidates": 8,
    "loop.verdicts": 8,
    "loop.adapters": 1,
    "loop.evals": 1,
    "loop.jobs": 2,
    "loop.dlq": 1,
}
