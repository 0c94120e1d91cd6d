"""Events to rows: one idempotent ``INSERT ... ON CONFLICT DO UPDATE`` per event type.

Each event type owns some columns of its row and says, column by column, how a later event combines with what is
stored (``Rule``). The same rules fold the events of one batch that hit the same row into one (PostgreSQL refuses
to touch a row twice in one statement), so applying a batch at once or event by event gives the same row, and so
does applying it twice. Two event types that share a row own disjoint columns: a Candidate and its Verdict come
from different topics, in either order, and leave the same Sample.

One module, because the rules of every event type must be read together: two types that share a row own
disjoint columns, which only a reader of all of them can check.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, String, Table, case, cast, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel

from schemas.messages import (TERMINAL_JOB_STATES, AdapterEvent, Candidate, DeadLetter, EvalResult, JobEvent, Message,
                              Verdict)
from schemas.tables import Adapter, DeadLetterRecord, EvalRecord, Job, Sample

if TYPE_CHECKING:  # only for annotations: the upserts themselves need no Kafka client
    from services.bus.consumer import Event

#: Job states after which a late "cancelling" request changes only ``cancel_requested``, not the state.


class Rule(enum.Enum):
    """How a column combines a later event's value with the stored (or earlier) one."""

    REPLACE = "replace"  # the later event's value
    FIRST = "first"  # set on insert only: creation times, and columns another event type owns
    COALESCE = "coalesce"  # the later value unless it is NULL
    COALESCE_JSON = "coalesce_json"  # the same for a JSON column, where "absent" is SQL NULL or JSON null
    NONEMPTY = "nonempty"  # the later string unless it is empty
    ANY = "any"  # true once any event said true
    JOB_STATE = "job_state"  # the later state, except that "cancelling" does not reopen a finished job


def merge_value(rule: Rule, earlier: Any, later: Any) -> Any:
    """The Python twin of ``update_expression``, used to fold the events of one batch."""
    if rule is Rule.REPLACE:
        return later
    if rule is Rule.FIRST:
        return earlier
    if rule in (Rule.COALESCE, Rule.COALESCE_JSON):
        return earlier if later is None else later
    if rule is Rule.NONEMPTY:
        return earlier if later == "" else later
    if rule is Rule.ANY:
        return bool(earlier) or bool(later)
    if rule is Rule.JOB_STATE:
        return earlier if later == "cancelling" and earlier in TERMINAL_JOB_STATES else later
    raise AssertionError(rule)


def update_expression(rule: Rule, stored: ColumnElement, incoming: ColumnElement) -> ColumnElement | None:
    """The SQL for a column on conflict; None for a column the statement leaves alone."""
    if rule is Rule.REPLACE:
        return incoming
    if rule is Rule.FIRST:
        return None
    if rule is Rule.COALESCE:
        return func.coalesce(incoming, stored)
    if rule is Rule.COALESCE_JSON:
        # SQLAlchemy's JSON type writes Python None as the JSON text 'null', not SQL NULL.
        absent = or_(incoming.is_(None), cast(incoming, String) == "null")
        return case((absent, stored), else_=incoming)
    if rule is Rule.NONEMPTY:
        return case((incoming == "", stored), else_=incoming)
    if rule is Rule.ANY:
        return or_(stored, incoming)
    if rule is Rule.JOB_STATE:
        # Not stored.in_(...): an expanding IN cannot run under executemany.
        finished = or_(*(stored == state for state in TERMINAL_JOB_STATES))
        return case(((incoming == "cancelling") & finished, stored), else_=incoming)
    raise AssertionError(rule)


@dataclass(frozen=True)
class Projection:
    """How one event type lands in one table: the row it writes and each column's rule (the key excepted)."""

    table: Table
    rules: dict[str, Rule]
    row: Callable[[Any], dict[str, Any]]
    key: str = "id"

    def merge(self, earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
        merged = {column: merge_value(rule, earlier[column], later[column]) for column, rule in self.rules.items()}
        merged[self.key] = later[self.key]
        return merged


def as_utc(moment: datetime | None) -> datetime | None:
    """Event times in UTC; a producer that sent a time without an offset meant UTC (the contract's clock)."""
    if moment is None:
        return None
    if moment.utcoffset() is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def eval_record_id(adapter_id: str, suite: str) -> str:
    """The EvalRecord key: one row per adapter and evaluation suite."""
    return f"{adapter_id}:{suite}"


def dead_letter_id(source_topic: str, partition: int, offset: int) -> str:
    """The DeadLetterRecord key: the message that could not be read, wherever it came from."""
    return f"{source_topic}:{partition}:{offset}"


def _candidate_row(m: Candidate) -> dict[str, Any]:
    return {
        "id": m.sample_id,
        "family": m.family,
        "difficulty": m.difficulty,
        "problem": m.problem,
        "adapter_id": m.adapter_id,
        "request_id": m.request_id,
        "round": m.round,
        "true_answer": m.true_answer,
        "answers": list(m.answers),
        "meta": dict(m.meta),
        "timings_ms": dict(m.timings_ms),
        "generated_at": as_utc(m.created_at),
        "status": "pending",
    }


def _verdict_row(m: Verdict) -> dict[str, Any]:
    return {
        "id": m.sample_id,
        "family": m.family,
        "difficulty": 0,
        "problem": "",
        "round": 0,
        "status": "accepted" if m.accepted else "rejected",
        "label": m.label,
        "checks": [check.model_dump(mode="json") for check in m.checks],
        "evidence": [item.model_dump(mode="json") for item in m.evidence],
        "verdict_at": as_utc(m.created_at),
    }


def _adapter_row(m: AdapterEvent) -> dict[str, Any]:
    return {
        "id": m.adapter_id,
        "parent_id": m.parent_id,
        "base_model": m.base_model,
        "snapshot_id": m.snapshot_id,
        "path": m.path,
        "status": m.status,
        "metrics": dict(m.metrics) or None,
        "config": dict(m.config) or None,
        "created_at": as_utc(m.created_at),
        "updated_at": as_utc(m.created_at),
        "promoted_at": as_utc(m.created_at) if m.status == "promoted" else None,
    }


def _eval_row(m: EvalResult) -> dict[str, Any]:
    return {
        "id": eval_record_id(m.adapter_id, m.suite),
        "adapter_id": m.adapter_id,
        "suite": m.suite,
        "created_at": as_utc(m.created_at),
        "scores": [score.model_dump(mode="json") for score in m.scores],
    }


def _job_row(m: JobEvent) -> dict[str, Any]:
    return {
        "id": m.job_id,
        "kind": m.kind,
        "state": m.state,
        "progress": m.progress,
        "message": m.message,
        "result": m.result,
        "cancel_requested": m.state == "cancelling",
        "created_at": as_utc(m.created_at),
        "updated_at": as_utc(m.created_at),
    }


def _dead_letter_row(m: DeadLetter) -> dict[str, Any]:
    return {
        "id": dead_letter_id(m.source_topic, m.partition, m.offset),
        "source_topic": m.source_topic,
        "partition": m.partition,
        "offset": m.offset,
        "source_key": m.source_key,
        "consumer_group": m.consumer_group,
        "raw_b64": m.raw_b64,
        "raw_size": m.raw_size,
        "error": m.error,
        "created_at": as_utc(m.created_at),
    }


def _table_of(model: type[SQLModel]) -> Table:
    """The table of a ``table=True`` model."""
    # SQLAlchemy's declarative mapping sets __table__ on the class; SQLModel's types do not declare it.
    return model.__table__  # type: ignore[attr-defined]


R = Rule
PROJECTIONS: dict[type[Message], Projection] = {
    # The Candidate owns what the generator knows; status starts "pending" but belongs to the Verdict.
    Candidate: Projection(
        _table_of(Sample),
        {
            **dict.fromkeys(("family", "difficulty", "problem", "adapter_id", "request_id", "round"), R.REPLACE),
            **dict.fromkeys(("true_answer", "answers", "meta", "timings_ms", "generated_at"), R.REPLACE),
            "status": R.FIRST,
        },
        _candidate_row,
    ),
    # The Verdict owns the outcome; what it inserts of the problem is a placeholder until the Candidate lands.
    Verdict: Projection(
        _table_of(Sample),
        {
            **dict.fromkeys(("family", "difficulty", "problem", "round"), R.FIRST),
            **dict.fromkeys(("status", "label", "checks", "evidence", "verdict_at"), R.REPLACE),
        },
        _verdict_row,
    ),
    # A later status event (promoted, rolled_back) never erases lineage or metrics it does not carry.
    AdapterEvent: Projection(
        _table_of(Adapter),
        {
            "parent_id": R.COALESCE,
            "snapshot_id": R.COALESCE,
            "base_model": R.NONEMPTY,
            "path": R.NONEMPTY,
            "status": R.REPLACE,
            "metrics": R.COALESCE_JSON,
            "config": R.COALESCE_JSON,
            "created_at": R.FIRST,
            "updated_at": R.REPLACE,
            "promoted_at": R.COALESCE,
        },
        _adapter_row,
    ),
    EvalResult: Projection(
        _table_of(EvalRecord),
        dict.fromkeys(("adapter_id", "suite", "created_at", "scores"), R.REPLACE),
        _eval_row,
    ),
    # Only a "cancelling" event sets cancel_requested, and nothing clears it.
    JobEvent: Projection(
        _table_of(Job),
        {
            "kind": R.NONEMPTY,
            "state": R.JOB_STATE,
            "progress": R.COALESCE,
            "message": R.REPLACE,
            "result": R.COALESCE_JSON,
            "cancel_requested": R.ANY,
            "created_at": R.FIRST,
            "updated_at": R.REPLACE,
        },
        _job_row,
    ),
    # The first dead letter of a message wins: a replay that dead-letters it again changes nothing.
    DeadLetter: Projection(
        _table_of(DeadLetterRecord),
        dict.fromkeys(
            ("source_topic", "partition", "offset", "source_key", "consumer_group", "raw_b64", "raw_size", "error",
             "created_at"),
            R.FIRST,
        ),  # fmt: skip
        _dead_letter_row,
    ),
}

_INSERTS: dict[str, Callable[[Table], sqlite.Insert | postgresql.Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}
_statements: dict[tuple[str, type[Message]], Any] = {}


def upsert_statement(dialect: str, message_type: type[Message]):
    """The cached ``INSERT ... ON CONFLICT`` for one event type on one dialect."""
    cache_key = (dialect, message_type)
    statement = _statements.get(cache_key)
    if statement is None:
        try:
            insert = _INSERTS[dialect]
        except KeyError:
            raise ValueError(f"the store supports SQLite and PostgreSQL, not {dialect!r}") from None
        projection = PROJECTIONS[message_type]
        table = projection.table
        statement = insert(table)
        updates = {}
        for column, rule in projection.rules.items():
            expression = update_expression(rule, table.c[column], statement.excluded[column])
            if expression is not None:
                updates[column] = expression
        if updates:
            statement = statement.on_conflict_do_update(index_elements=[table.c[projection.key]], set_=updates)
        else:
            statement = statement.on_conflict_do_nothing(index_elements=[table.c[projection.key]])
        _statements[cache_key] = statement
    return statement


def fold_rows(message_type: type[Message], messages: Iterable[Message]) -> list[dict[str, Any]]:
    """One row per key: the messages (in log order) that hit the same row, merged by the column rules."""
    projection = PROJECTIONS[message_type]
    rows: dict[Any, dict[str, Any]] = {}
    for message in messages:
        row = projection.row(message)
        key = row[projection.key]
        earlier = rows.get(key)
        rows[key] = row if earlier is None else projection.merge(earlier, row)
    return list(rows.values())


def order_for_folding(events: Sequence[Event]) -> list[Event]:
    """Events in log order within each partition (the batch is usually in that order already)."""
    return sorted(events, key=lambda event: (event.topic, event.partition, event.offset))


def upsert_events(connection: Connection, events: Sequence[Event]) -> dict[str, int]:
    """Write the effect of ``events`` in the connection's transaction; returns rows written per table."""
    by_type: dict[type[Message], list[Message]] = defaultdict(list)
    for event in order_for_folding(events):
        message_type = type(event.message)
        if message_type not in PROJECTIONS:
            raise TypeError(f"the store has no table for {message_type.__name__} (topic {event.topic})")
        by_type[message_type].append(event.message)
    return upsert_messages(connection, by_type)


def upsert_messages(connection: Connection, by_type: dict[type[Message], list[Message]]) -> dict[str, int]:
    """Write messages grouped by type, each group in log order; returns rows written per table."""
    dialect = connection.dialect.name
    written: dict[str, int] = defaultdict(int)
    for message_type, messages in by_type.items():
        rows = fold_rows(message_type, messages)
        if rows:
            connection.execute(upsert_statement(dialect, message_type), rows)
            written[PROJECTIONS[message_type].table.name] += len(rows)
    return dict(written)
