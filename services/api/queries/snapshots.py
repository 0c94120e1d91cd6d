"""Snapshots: the listing, and the difference between two (computed in SQL, so large snapshots stay cheap)."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from schemas.tables import Adapter, Sample, Snapshot, SnapshotMember
from services.api.models import DifficultyCounts, Page, SnapshotDiff, SnapshotOut, StatusCounts
from services.api.queries.samples import summary

#: The snapshot name that means "the newest one" wherever a snapshot id is taken.
LATEST = "latest"


def resolve_snapshot_id(session: Session, *, snapshot_id: str) -> str | None:
    """The id itself if that snapshot exists, the newest snapshot's for ``latest``; None if there is none."""
    if snapshot_id == LATEST:
        row = session.exec(
            select(col(Snapshot.id))
            .order_by(col(Snapshot.created_at).desc().nulls_last(), col(Snapshot.id).desc())
            .limit(1)
        ).first()
        return row[0] if row else None
    return snapshot_id if session.get(Snapshot, snapshot_id) is not None else None


def snapshots_out(session: Session, snapshots: list[Snapshot]) -> list[SnapshotOut]:
    """The snapshots with the adapters trained on each."""
    trained: dict[str, list[str]] = defaultdict(list)
    if snapshots:
        for adapter_id, snapshot_id in session.exec(
            select(col(Adapter.id), col(Adapter.snapshot_id))
            .where(col(Adapter.snapshot_id).in_([s.id for s in snapshots]))
            .order_by(col(Adapter.id))
        ).all():
            trained[snapshot_id].append(adapter_id)
    return [
        SnapshotOut(id=s.id, created_at=s.created_at, size=s.size, policy=s.policy, adapters=trained[s.id])
        for s in snapshots
    ]


def list_snapshots(session: Session, *, limit: int = 50, offset: int = 0) -> Page[SnapshotOut]:
    total = session.exec(select(func.count()).select_from(Snapshot)).one()[0]
    rows = session.exec(
        select(Snapshot)
        .order_by(col(Snapshot.created_at).desc().nulls_last(), col(Snapshot.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return Page[SnapshotOut](
        items=snapshots_out(session, [row for (row,) in rows]), total=total, limit=limit, offset=offset
    )


def get_snapshot(session: Session, *, snapshot_id: str) -> SnapshotOut | None:
    """One snapshot (``latest`` names the newest); None if there is no such snapshot."""
    resolved = resolve_snapshot_id(session, snapshot_id=snapshot_id)
    if resolved is None:
        return None
    snapshot = session.get(Snapshot, resolved)
    assert snapshot is not None  # resolve_snapshot_id found it
    return snapshots_out(session, [snapshot])[0]


def _only_in(first: str, second: str):
    """SnapshotMember rows of ``first`` whose sample is not in ``second``, as an aliased selectable's condition."""
    member = aliased(SnapshotMember)
    other = aliased(SnapshotMember)
    missing = ~exists().where(and_(col(other.snapshot_id) == second, col(other.sample_id) == member.sample_id))
    return member, and_(col(member.snapshot_id) == first, missing)


def _counts(session: Session, first: str, second: str | None, column) -> dict:
    """Members of ``first`` (not in ``second`` when given) grouped by a Sample column."""
    if second is None:
        member = aliased(SnapshotMember)
        condition = col(member.snapshot_id) == first
    else:
        member, condition = _only_in(first, second)
    rows = session.exec(
        select(column, func.count())
        .select_from(member)
        .join(Sample, col(Sample.id) == member.sample_id)
        .where(condition)
        .group_by(column)
    ).all()
    return {value: count for value, count in rows}


def _listed(session: Session, first: str, second: str, limit: int) -> list:
    member, condition = _only_in(first, second)
    rows = session.exec(
        select(Sample)
        .join(member, col(Sample.id) == member.sample_id)
        .where(condition)
        .order_by(col(Sample.difficulty), col(Sample.id))
        .limit(limit)
    ).all()
    return [summary(row) for (row,) in rows]


def _size(session: Session, snapshot_id: str) -> int:
    return session.exec(
        select(func.count()).select_from(SnapshotMember).where(col(SnapshotMember.snapshot_id) == snapshot_id)
    ).one()[0]


def diff_snapshots(session: Session, *, base: str, target: str, limit: int = 100) -> SnapshotDiff:
    """What ``target`` has that ``base`` has not (added) and the reverse (removed), counted by difficulty and status."""
    tables = {}
    for column, name in ((Sample.difficulty, "difficulty"), (Sample.status, "status")):
        tables[name] = {
            "base": _counts(session, base, None, column),
            "target": _counts(session, target, None, column),
            "added": _counts(session, target, base, column),
            "removed": _counts(session, base, target, column),
        }

    def rows(name: str) -> list[dict]:
        counts = tables[name]
        keys = sorted(set().union(*(c.keys() for c in counts.values())))
        return [{name: key, **{part: counts[part].get(key, 0) for part in counts}} for key in keys]

    added = _listed(session, target, base, limit)
    removed = _listed(session, base, target, limit)
    return SnapshotDiff(
        base=base,
        target=target,
        base_size=_size(session, base),
        target_size=_size(session, target),
        added_total=sum(tables["difficulty"]["added"].values()),
        removed_total=sum(tables["difficulty"]["removed"].values()),
        added=added,
        removed=removed,
        by_difficulty=[DifficultyCounts(**row) for row in rows("difficulty")],
        by_status=[StatusCounts(**row) for row in rows("status")],
    )
