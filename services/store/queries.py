"""Small read queries the workers make against the store."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlmodel import col

from schemas.tables import Sample

_CHUNK = 500  # SQLite allows at most 999 bound parameters per statement (older builds)


def sample_ids_among(engine: Engine, ids: Sequence[str], *, status: str | None = None) -> set[str]:
    """Which of ``ids`` the store holds (with ``status``, when given)."""
    found: set[str] = set()
    with engine.connect() as connection:
        for start in range(0, len(ids), _CHUNK):
            query = select(col(Sample.id)).where(col(Sample.id).in_(list(ids[start : start + _CHUNK])))
            if status is not None:
                query = query.where(col(Sample.status) == status)
            found.update(connection.execute(query).scalars())
    return found
