"""Samples: browse with filters, read one with its answers, checks, evidence and lineage, import a seed dataset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import Authorized, DbSession, State
from services.api.errors import NotFound, responses
from services.api.models import ImportResult, Page, SampleDetail, SampleSort, SampleStatus, SampleSummary
from services.api.queries.samples import filter_choices, get_sample, list_samples, sample_filters
from services.api.seeds import SeedError, SeedRow, publish_seed

router = APIRouter(prefix="/samples", tags=["samples"])

#: Free text the store can hold: PostgreSQL refuses NUL characters in text.
Text = Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$")]
SMALL_INT = 2**31 - 1


@router.get("", response_model=Page[SampleSummary], responses=responses(422))
def browse_samples(
    session: DbSession,
    family: Annotated[Text | None, Query(description="Task family, e.g. arithmetic.")] = None,
    status: Annotated[SampleStatus | None, Query()] = None,
    difficulty: Annotated[int | None, Query(ge=0, le=SMALL_INT)] = None,
    difficulty_min: Annotated[int | None, Query(ge=0, le=SMALL_INT)] = None,
    difficulty_max: Annotated[int | None, Query(ge=0, le=SMALL_INT)] = None,
    adapter: Annotated[
        Text | None, Query(description='The adapter that generated it; "base" for the base model.')
    ] = None,
    round: Annotated[int | None, Query(ge=0, le=SMALL_INT)] = None,  # noqa: A002 - the user's word for it
    q: Annotated[Text | None, Query(description="Text in the problem or the label (case-insensitive).")] = None,
    snapshot: Annotated[Text | None, Query(description="Only samples frozen in this snapshot.")] = None,
    sort: Annotated[SampleSort, Query(description="A field, descending with a leading '-'.")] = "-generated_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[SampleSummary]:
    filters = sample_filters(
        family=family,
        status=status,
        difficulty=difficulty,
        difficulty_min=difficulty_min,
        difficulty_max=difficulty_max,
        adapter=adapter,
        round=round,
        text=q,
        snapshot=snapshot,
    )
    return list_samples(session, filters=filters, sort=sort, limit=limit, offset=offset)


class FilterChoices(BaseModel):
    families: list[str]
    difficulties: list[int]
    rounds: list[int]
    adapters: list[str]


@router.get("/filters", response_model=FilterChoices)
def sample_filter_choices(session: DbSession) -> FilterChoices:
    """The values each filter can take now."""
    return FilterChoices(**filter_choices(session))


class SeedImport(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    source: Text = Field(
        default="api", min_length=1, description="Where the rows come from (kept in each row's seed check)."
    )
    rows: list[SeedRow] = Field(min_length=1, max_length=10_000)


@router.post(
    "/import",
    status_code=202,
    response_model=ImportResult,
    dependencies=[Authorized],
    responses=responses(400, 401, 403, 422, 503),
)
def import_seed_samples(body: SeedImport, state: State) -> ImportResult:
    """Publish labelled rows as accepted samples (the store shows them once the store writer has applied them)."""
    try:
        ids = publish_seed(state.settings, body.rows, source=body.source, producer=state.producer())
    except SeedError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return ImportResult(imported=len(ids), sample_ids=ids[:100])


@router.get("/{sample_id}", response_model=SampleDetail, responses=responses(404, 422))
def read_sample(
    session: DbSession, sample_id: Annotated[str, Path(max_length=200, pattern=r"^[^\x00]*$")]
) -> SampleDetail:
    detail = get_sample(session, sample_id=sample_id)
    if detail is None:
        raise NotFound(f"sample {sample_id!r} not found")
    return detail
