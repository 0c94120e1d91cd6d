"""Jobs: start a retraining (with overrides), list, status, cancel; the Celery job runner does the work."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.api.deps import Authorized, DbSession, State
from schemas.messages import JobState
from services.api.errors import Conflict, NotFound, responses
from services.api.models import CancelAccepted, JobAccepted, JobOut, Page, RetrainRequest
from services.api.queries.adapters import current_adapter
from services.api.queries.jobs import list_jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(max_length=200, pattern=r"^[^\x00]*$")]


@router.post(
    "/retrain",
    status_code=202,
    response_model=JobAccepted,
    dependencies=[Authorized],
    responses=responses(400, 401, 403, 422, 503),
)
def start_retraining(
    state: State, session: DbSession, body: Annotated[RetrainRequest | None, Body()] = None
) -> JobAccepted:
    """Queue a training job; its progress is at ``status_url``. The current adapter is the new one's parent."""
    from services.jobs import submit_job

    kwargs = dict((body or RetrainRequest()).overrides)
    if "parent_id" not in kwargs and "parent_path" not in kwargs:
        current = current_adapter(session)
        if current is not None:
            kwargs.update(parent_id=current.id, parent_path=current.path)
    kind = state.job_kinds["retrain"]
    try:
        job_id = submit_job(kind, kwargs, settings=state.settings)
    except ValidationError as exc:  # the job's request model refused an override: the caller's mistake
        raise RequestValidationError([{**e, "loc": ("overrides", *e["loc"])} for e in exc.errors()]) from exc
    return JobAccepted(job_id=job_id, kind=kind, status_url=f"/api/jobs/{job_id}", kwargs=kwargs)


@router.get("", response_model=Page[JobOut], responses=responses(422))
def browse_jobs(
    session: DbSession,
    kind: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")] = None,
    state: Annotated[JobState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[JobOut]:
    """Jobs as the store has them (from ``loop.jobs``), newest first."""
    return list_jobs(session, kind=kind, state=state, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut, responses=responses(404, 422))
def read_job(state: State, job_id: JobId) -> JobOut:
    """The job's state and progress, up to date with the job runner."""
    from services.jobs import job_status

    status = job_status(job_id, settings=state.settings)
    if status is None:
        raise NotFound(f"job {job_id!r} not found")
    return status


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=CancelAccepted,
    dependencies=[Authorized],
    responses=responses(401, 403, 404, 409, 422, 503),
)
def cancel_job(state: State, job_id: JobId) -> CancelAccepted:
    """Ask a queued or running job to stop; it ends ``cancelled`` at its next progress report."""
    from services.jobs import request_cancel

    try:
        requested = request_cancel(job_id, settings=state.settings)
    except LookupError:
        raise NotFound(f"job {job_id!r} not found") from None
    if not requested:
        raise Conflict(f"job {job_id!r} has already ended")
    return CancelAccepted(job_id=job_id, cancel_requested=True)
