"""The SQL view of the loop (SQLModel tables), written only by the store writer.

Lineage lives in the columns: ``Sample.adapter_id`` is the adapter that generated a sample,
``Adapter.snapshot_id`` the snapshot that trained an adapter, ``SnapshotMember`` which samples
a snapshot froze. Times come from the events, so a replay rebuilds identical rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def _json(**kwargs: Any) -> Any:
    return Field(default=None, sa_column=Column(JSON, **kwargs))


class SampleBase(SQLModel):
    id: str = Field(primary_key=True, description="Content hash of (family, canonical problem).")
    family: str = Field(default="", index=True)
    difficulty: int = Field(default=0, index=True)
    problem: str = ""
    adapter_id: str | None = Field(default=None, index=True, description="The adapter that generated it.")
    request_id: str | None = None
    round: int = Field(default=0, index=True)
    true_answer: str | None = None
    status: str = Field(default="pending", index=True, description="pending, accepted or rejected.")
    label: str | None = Field(default=None, description="The answer chosen to train on.")
    generated_at: datetime | None = None
    verdict_at: datetime | None = None


class Sample(SampleBase, table=True):
    answers: list[str] | None = _json()
    meta: dict[str, Any] | None = _json()
    timings_ms: dict[str, float] | None = _json()
    checks: list[dict[str, Any]] | None = _json()
    evidence: list[dict[str, Any]] | None = _json()


class SamplePublic(SampleBase):
    answers: list[str] | None = None
    meta: dict[str, Any] | None = None
    checks: list[dict[str, Any]] | None = None
    evidence: list[dict[str, Any]] | None = None


class AdapterBase(SQLModel):
    id: str = Field(primary_key=True)
    parent_id: str | None = Field(default=None, index=True)
    base_model: str = ""
    snapshot_id: str | None = Field(default=None, index=True, description="The snapshot that trained it.")
    path: str = ""
    status: str = Field(default="trained", index=True)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    promoted_at: datetime | None = Field(default=None, description="When it was last promoted: its place among the "
                                         "versions a sample's staleness is counted in.")


class Adapter(AdapterBase, table=True):
    metrics: dict[str, float] | None = _json()
    config: dict[str, Any] | None = _json()


class AdapterPublic(AdapterBase):
    metrics: dict[str, float] | None = None
    config: dict[str, Any] | None = None


class Snapshot(SQLModel, table=True):
    id: str = Field(primary_key=True)
    created_at: datetime | None = None
    size: int = 0
    policy: dict[str, Any] | None = _json()


class SnapshotMember(SQLModel, table=True):
    snapshot_id: str = Field(primary_key=True)
    sample_id: str = Field(primary_key=True, index=True)


class JobBase(SQLModel):
    id: str = Field(primary_key=True)
    kind: str = Field(default="", index=True)
    state: str = Field(default="queued", index=True)
    progress: float | None = None
    message: str = ""
    cancel_requested: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Job(JobBase, table=True):
    result: dict[str, Any] | None = _json()


class JobPublic(JobBase):
    result: dict[str, Any] | None = None


class EvalRecord(SQLModel, table=True):
    id: str = Field(primary_key=True, description="adapter id and suite.")
    adapter_id: str = Field(index=True)
    suite: str = ""
    created_at: datetime | None = None
    scores: list[dict[str, Any]] | None = _json()


class DeadLetterRecord(SQLModel, table=True):
    id: str = Field(primary_key=True, description="source topic, partition and offset.")
    source_topic: str = Field(index=True)
    partition: int = 0
    offset: int = 0
    source_key: str | None = None
    consumer_group: str = ""
    raw_b64: str = ""
    raw_size: int = 0
    error: str = ""
    created_at: datetime | None = None
