"""The import of a seed dataset from JSONL: labelled samples, published as accepted samples.

Each row is ``{"family", "problem", "label"}`` plus optional ``difficulty``, ``answers``, ``true_answer``, ``meta``
and ``round`` (an export's own rows qualify; their other fields are ignored). Every row becomes a Candidate and an
accepted Verdict with a ``seed`` check, published on Kafka like any other sample rather than written to SQL:
the store writer stays the only writer of the store, the topics stay a complete log (a replay rebuilds the seeds
too), and the workers that follow the topics see the seeds as they see any sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError

from schemas.messages import SEED_REQUEST_PREFIX, Candidate, CheckResult, Message, Verdict, sample_id_for
from services.bus import EventProducer, encode_message
from services.settings import Settings

#: Text the store can hold: PostgreSQL refuses NUL characters in text columns.
NO_NUL = r"^[^\x00]*$"


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: An integer as JSON Schema means it: 3 and 3.0, but not "3" or true.
JsonInt = Annotated[int, BeforeValidator(_integral), Strict()]


class SeedRow(BaseModel):
    """One labelled sample of a seed dataset. Other keys (an export's id, status, checks ...) are ignored: the
    sample id is always the content hash of family and problem."""

    model_config = ConfigDict(extra="ignore", strict=True)

    family: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    problem: str = Field(min_length=1, max_length=100_000, pattern=NO_NUL)
    label: str = Field(max_length=100_000, pattern=NO_NUL)
    difficulty: JsonInt = Field(default=0, ge=0, le=1_000_000)
    round: JsonInt = Field(default=0, ge=0, le=1_000_000_000)
    answers: list[str] | None = Field(default=None, max_length=64, description="Default: the label alone.")
    true_answer: str | None = Field(default=None, max_length=100_000, pattern=NO_NUL)
    meta: dict[str, Any] = Field(default_factory=dict, description="The family's problem data.")

    @property
    def sample_id(self) -> str:
        return sample_id_for(self.family, self.problem)


class SeedError(ValueError):
    """A seed dataset that cannot be imported; the message names the line."""


def read_seed_jsonl(lines: Iterable[str], *, source: str = "seed") -> list[SeedRow]:
    """Parse and validate every line first, so that a bad line imports nothing."""
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if isinstance(row, dict) and isinstance(row.get("meta"), str):  # an export writes meta as JSON text
                row["meta"] = json.loads(row["meta"]) if row["meta"].strip() else {}
            rows.append(SeedRow.model_validate(row))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()[:5])
            raise SeedError(f"{source} line {number}: {problems}"[:500]) from exc
        except ValueError as exc:  # not JSON
            raise SeedError(f"{source} line {number}: {exc}"[:500]) from exc
    return rows


def seed_messages(rows: Iterable[SeedRow], *, source: str, max_bytes: int | None = None) -> list[Message]:
    """A Candidate and an accepted Verdict per row, in row order."""
    messages: list[Message] = []
    moment = datetime.now(UTC)
    reason = f"seed: imported from {source}"[:500]
    for number, row in enumerate(rows, start=1):
        candidate = Candidate(
            sample_id=row.sample_id,
            family=row.family,
            difficulty=row.difficulty,
            problem=row.problem,
            answers=row.answers if row.answers is not None else [row.label],
            adapter_id=None,
            request_id=f"{SEED_REQUEST_PREFIX}{source}"[:200],
            round=row.round,
            true_answer=row.true_answer,
            meta=row.meta,
            created_at=moment,
        )
        verdict = Verdict(
            sample_id=row.sample_id,
            family=row.family,
            accepted=True,
            label=row.label,
            checks=[CheckResult(name="seed", passed=True, score=1.0, reason=reason)],
            created_at=moment,
        )
        for message in (candidate, verdict):  # encoded here, so that a row that cannot be sent stops all of them
            try:
                size = len(encode_message(message))
            except ValueError as exc:  # text with lone surrogates cannot be UTF-8 encoded
                raise SeedError(f"row {number}: not valid Unicode text ({exc})"[:500]) from exc
            if max_bytes is not None and size > max_bytes:
                raise SeedError(
                    f"row {number} is larger than the bus accepts ({max_bytes} bytes; LOOP_MAX_MESSAGE_BYTES)"
                )
        messages += [candidate, verdict]
    return messages


def publish_seed(
    settings: Settings, rows: list[SeedRow], *, source: str, producer: EventProducer | None = None
) -> list[str]:
    """Publish the rows as accepted samples and wait until Kafka has them all; returns their sample ids."""
    messages = seed_messages(rows, source=source, max_bytes=settings.max_message_bytes)
    own = producer is None
    producer = producer or EventProducer(settings, client_id="loop-seed-import")
    try:
        futures = [producer.publish(message) for message in messages]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        if own:
            producer.close()
    return list(dict.fromkeys(row.sample_id for row in rows))
