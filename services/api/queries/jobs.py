"""Jobs as the store has them (from ``loop.jobs``); a single job's live status comes from ``services.jobs``."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session, col

from schemas.tables import Job, JobPublic
from services.api.models import Page


def list_jobs(
    session: Session, *, kind: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
) -> Page[JobPublic]:
    """Jobs, newest first."""
    where = [col(column) == value for column, value in ((Job.kind, kind), (Job.state, state)) if value]
    total = session.exec(select(func.count()).select_from(Job).where(*where)).one()[0]
    rows = session.exec(
        select(Job)
        .where(*where)
        .order_by(col(Job.created_at).desc().nulls_last(), col(Job.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    items = [JobPublic.model_validate(row.model_dump()) for (row,) in rows]
    return Page[JobPublic](items=items, total=total, limit=limit, offset=offset)
