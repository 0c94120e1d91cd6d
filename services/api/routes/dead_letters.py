"""Dead letters: messages a consumer could not read, with the reason and the raw bytes shown safely."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from services.api.deps import DbSession
from services.api.errors import responses
from services.api.models import DeadLetterOut, Page
from services.api.queries.dead_letters import get_dead_letter, list_dead_letters

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])

Name = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]


@router.get("", response_model=Page[DeadLetterOut], responses=responses(422))
def browse_dead_letters(
    session: DbSession,
    source_topic: Name = None,
    consumer_group: Name = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[DeadLetterOut]:
    return list_dead_letters(
        session, source_topic=source_topic, consumer_group=consumer_group, limit=limit, offset=offset
    )


@router.get("/{dead_letter_id}", response_model=DeadLetterOut, responses=responses(404, 422))
def read_dead_letter(
    session: DbSession, dead_letter_id: Annotated[str, Path(max_length=300, pattern=r"^[^\x00]*$")]
) -> DeadLetterOut:
    """One dead letter; its id is ``<source topic>:<partition>:<offset>``."""
    return get_dead_letter(session, dead_letter_id=dead_letter_id)
