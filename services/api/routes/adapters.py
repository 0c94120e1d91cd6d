"""Adapters: list with metrics and held-out accuracy, one, promote, roll back.

Promote and roll back publish AdapterEvents on ``loop.adapters`` (the generators and the controller follow that
topic; the store writer applies it) and answer 202 with what they published.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query

from services.api.deps import Authorized, DbSession, State
from services.api.errors import responses
from services.api.models import AdapterAction, AdapterOut, Page, PromoteRequest, PublishedAdapterEvent, RollbackRequest
from services.api.queries.adapters import AdapterPlan, get_adapter, list_adapters, plan_promotion, plan_rollback

router = APIRouter(prefix="/adapters", tags=["adapters"])

AdapterId = Annotated[str, Path(max_length=200, pattern=r"^[^\x00]*$")]
PUBLISH_TIMEOUT_S = 30.0


def publish(state: State, plan: AdapterPlan) -> AdapterAction:
    producer = state.producer()
    for event in plan.events:  # one at a time: the roll back's two events keep their order
        producer.publish(event).get(timeout=PUBLISH_TIMEOUT_S)
    return AdapterAction(
        current_before=plan.before,
        current_after=plan.after,
        events=[PublishedAdapterEvent(adapter_id=e.adapter_id, status=e.status) for e in plan.events],
    )


@router.get("", response_model=Page[AdapterOut], responses=responses(422))
def browse_adapters(
    session: DbSession,
    status: Annotated[Literal["trained", "promoted", "rejected", "rolled_back"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[AdapterOut]:
    """Adapters, newest first, with their training metrics, latest held-out scores, and which one is current."""
    return list_adapters(session, status=status, limit=limit, offset=offset)


@router.post(
    "/rollback",
    status_code=202,
    response_model=AdapterAction,
    dependencies=[Authorized],
    responses=responses(400, 401, 403, 404, 409, 422, 503),
)
def roll_back(
    state: State, session: DbSession, body: Annotated[RollbackRequest | None, Body()] = None
) -> AdapterAction:
    """Roll the current adapter back: to its parent by default, to ``to`` if given (``"base"``: the base model)."""
    return publish(state, plan_rollback(session, to=(body or RollbackRequest()).to))


@router.get("/{adapter_id}", response_model=AdapterOut, responses=responses(404, 422))
def read_adapter(session: DbSession, adapter_id: AdapterId) -> AdapterOut:
    return get_adapter(session, adapter_id=adapter_id)


@router.post(
    "/{adapter_id}/promote",
    status_code=202,
    response_model=AdapterAction,
    dependencies=[Authorized],
    responses=responses(400, 401, 403, 404, 409, 422, 503),
)
def promote(
    state: State, session: DbSession, adapter_id: AdapterId, body: Annotated[PromoteRequest | None, Body()] = None
) -> AdapterAction:
    """Make this adapter the one the generators use."""
    return publish(state, plan_promotion(session, adapter_id=adapter_id, force=(body or PromoteRequest()).force))
