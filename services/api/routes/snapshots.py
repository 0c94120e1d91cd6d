"""Dataset snapshots: list, one, the difference between two, and a download as JSONL or Parquet."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from services.api.deps import DbSession, State
from services.api.errors import NotFound, responses
from services.api.export import export_snapshot
from services.api.models import Page, SnapshotDiff, SnapshotOut
from services.api.queries.snapshots import diff_snapshots, get_snapshot, list_snapshots, resolve_snapshot_id

router = APIRouter(prefix="/snapshots", tags=["snapshots"])

SnapshotId = Annotated[str, Path(max_length=200, pattern=r"^[^\x00]*$", description='A snapshot id, or "latest".')]
SnapshotParam = Annotated[str, Query(max_length=200, pattern=r"^[^\x00]*$", description='A snapshot id, or "latest".')]
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def _resolve(session, snapshot_id: str) -> str:
    resolved = resolve_snapshot_id(session, snapshot_id=snapshot_id)
    if resolved is None:
        raise NotFound(f"snapshot {snapshot_id!r} not found")
    return resolved


@router.get("", response_model=Page[SnapshotOut], responses=responses(422))
def browse_snapshots(
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[SnapshotOut]:
    """Snapshots, newest first, with the adapters trained on each."""
    return list_snapshots(session, limit=limit, offset=offset)


@router.get("/diff", response_model=SnapshotDiff, responses=responses(404, 422))
def diff(
    session: DbSession,
    base: SnapshotParam,
    target: SnapshotParam,
    limit: Annotated[int, Query(ge=0, le=1000, description="How many added and removed samples to list.")] = 100,
) -> SnapshotDiff:
    """Samples added and removed from ``base`` to ``target``, with counts by difficulty and by status."""
    return diff_snapshots(session, base=_resolve(session, base), target=_resolve(session, target), limit=limit)


@router.get("/{snapshot_id}", response_model=SnapshotOut, responses=responses(404, 422))
def read_snapshot(session: DbSession, snapshot_id: SnapshotId) -> SnapshotOut:
    found = get_snapshot(session, snapshot_id=snapshot_id)
    if found is None:
        raise NotFound(f"snapshot {snapshot_id!r} not found")
    return found


@router.get(
    "/{snapshot_id}/export",
    response_class=FileResponse,
    responses={
        200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "The snapshot's samples"},
        **responses(404, 422),
    },
)
def download_snapshot(
    state: State,
    session: DbSession,
    snapshot_id: SnapshotId,
    format: Annotated[Literal["jsonl", "parquet"], Query(description="jsonl or parquet")] = "jsonl",  # noqa: A002
) -> FileResponse:
    """The snapshot as one file (the same rows and fields as ``loopctl export``)."""
    resolved = _resolve(session, snapshot_id)
    workdir = FilePath(tempfile.mkdtemp(prefix="loop-export-"))
    try:
        result = export_snapshot(state.engine, snapshot_id=resolved, out_dir=workdir, formats=[format], stem="snapshot")
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    path = result.files[format]
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in resolved)
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[format],
        filename=f"{safe_name}.{format}",
        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True),
    )
