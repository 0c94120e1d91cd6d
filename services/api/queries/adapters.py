"""Adapters: the listing with metrics and held-out accuracy, which one is current, what promote and roll back publish.

The current adapter is what the generators follow on ``loop.adapters`` (``AdapterFollower``): the last adapter
promoted, unless it was rolled back since (then the base model, until another is promoted). In the store that is
the adapter among those ever promoted whose latest event is newest, if that event was ``promoted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session, col

from schemas.messages import AdapterEvent, AdapterStatus
from schemas.tables import Adapter, EvalRecord
from services.api.errors import Conflict, NotFound
from services.api.models import AdapterOut, EvalScoreOut, Page
from services.api.queries.samples import BASE_MODEL
from services.store.queries import last_adapter_change

#: The suite the promotion gate reads; an adapter's listing shows it first.
HELDOUT_SUITE = "heldout"


def current_adapter(session: Session) -> Adapter | None:
    last = last_adapter_change(session.connection())
    return session.get(Adapter, last.id) if last is not None and last.status == "promoted" else None


def adapter_rounds(session: Session) -> dict[str, int]:
    """Each adapter's place in creation order, from 1 (the base model is round 0)."""
    ids = session.exec(
        select(col(Adapter.id)).order_by(col(Adapter.created_at).asc().nulls_last(), col(Adapter.id))
    ).all()
    return {adapter_id: number for number, (adapter_id,) in enumerate(ids, start=1)}


def latest_evals(session: Session, adapter_ids: list[str]) -> dict[str, EvalRecord]:
    """The evaluation each adapter's listing shows: its held-out suite, else its newest."""
    if not adapter_ids:
        return {}
    chosen: dict[str, EvalRecord] = {}
    rows = session.exec(select(EvalRecord).where(col(EvalRecord.adapter_id).in_(adapter_ids))).all()
    for (record,) in rows:
        known = chosen.get(record.adapter_id)
        rank = (record.suite == HELDOUT_SUITE, _aware(record.created_at))
        if known is None or rank > (known.suite == HELDOUT_SUITE, _aware(known.created_at)):
            chosen[record.adapter_id] = record
    return chosen


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def eval_scores(record: EvalRecord | None) -> list[EvalScoreOut]:
    if record is None:
        return []
    return [EvalScoreOut.model_validate(score) for score in record.scores or [] if isinstance(score, dict)]


def adapter_out(
    adapter: Adapter, *, current_id: str | None, rounds: dict[str, int], record: EvalRecord | None
) -> AdapterOut:
    scores = eval_scores(record)
    total = sum(score.n for score in scores)
    mean = sum(score.accuracy * score.n for score in scores) / total if total else None
    return AdapterOut(
        **adapter.model_dump(),
        current=adapter.id == current_id,
        round=rounds.get(adapter.id, 0),
        heldout=scores,
        mean_accuracy=mean,
    )


def list_adapters(session: Session, *, status: str | None = None, limit: int = 50, offset: int = 0) -> Page[AdapterOut]:
    where = [col(Adapter.status) == status] if status else []
    total = session.exec(select(func.count()).select_from(Adapter).where(*where)).one()[0]
    rows = session.exec(
        select(Adapter)
        .where(*where)
        .order_by(col(Adapter.created_at).desc().nulls_last(), col(Adapter.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    adapters = [row for (row,) in rows]
    current = current_adapter(session)
    rounds = adapter_rounds(session)
    evals = latest_evals(session, [a.id for a in adapters])
    items = [
        adapter_out(a, current_id=current.id if current else None, rounds=rounds, record=evals.get(a.id))
        for a in adapters
    ]
    return Page[AdapterOut](items=items, total=total, limit=limit, offset=offset)


def get_adapter(session: Session, *, adapter_id: str) -> AdapterOut:
    adapter = session.get(Adapter, adapter_id)
    if adapter is None:
        raise NotFound(f"adapter {adapter_id!r} not found")
    current = current_adapter(session)
    record = latest_evals(session, [adapter_id]).get(adapter_id)
    return adapter_out(
        adapter, current_id=current.id if current else None, rounds=adapter_rounds(session), record=record
    )


# -- promote and roll back -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterPlan:
    """The events a promote or roll back publishes, in order, and which adapter is current before and after."""

    before: str | None
    after: str | None
    events: list[AdapterEvent]


def _status_event(adapter: Adapter, status: AdapterStatus, moment: datetime) -> AdapterEvent:
    # Lineage, metrics and config are left empty: the store keeps what it has for them (COALESCE rules).
    return AdapterEvent(
        adapter_id=adapter.id, base_model=adapter.base_model, path=adapter.path, status=status, created_at=moment
    )


def plan_promotion(session: Session, *, adapter_id: str, force: bool = False) -> AdapterPlan:
    adapter = session.get(Adapter, adapter_id)
    if adapter is None:
        raise NotFound(f"adapter {adapter_id!r} not found")
    current = current_adapter(session)
    if current is not None and current.id == adapter.id:
        raise Conflict(f"adapter {adapter_id!r} is already the current adapter")
    if adapter.status == "rejected" and not force:
        raise Conflict(
            f'adapter {adapter_id!r} was rejected by the promotion gate; send {{"force": true}} to promote it anyway'
        )
    if not adapter.path:
        raise Conflict(f"adapter {adapter_id!r} has no path: the generators could not load it")
    event = _status_event(adapter, "promoted", datetime.now(UTC))
    return AdapterPlan(before=current.id if current else None, after=adapter.id, events=[event])


def plan_rollback(session: Session, *, to: str | None = None) -> AdapterPlan:
    """Roll the current adapter back to ``to``: an adapter id, ``base``, or None for the current adapter's parent."""
    current = current_adapter(session)
    if current is None:
        raise Conflict("no adapter is promoted: the generators already use the base model")
    target_id = current.parent_id if to is None else (None if to == BASE_MODEL else to)
    target = None
    if target_id is not None:
        target = session.get(Adapter, target_id)
        if target is None:
            if to is None:
                raise Conflict(
                    f'the current adapter\'s parent {target_id!r} is not in the store; name another with "to"'
                )
            raise NotFound(f"adapter {target_id!r} not found")
        if target.id == current.id:
            raise Conflict(f"adapter {target_id!r} is the current adapter; roll back to another one")
        if target.status not in ("promoted", "rolled_back"):
            raise Conflict(f"adapter {target_id!r} was never promoted (status {target.status}); promote it instead")
    moment = datetime.now(UTC)
    events = [_status_event(current, "rolled_back", moment)]
    if target is not None:
        # A microsecond later: the store and the followers order the two events by time as well as by offset.
        events.append(_status_event(target, "promoted", moment + timedelta(microseconds=1)))
    return AdapterPlan(before=current.id, after=target.id if target else None, events=events)
