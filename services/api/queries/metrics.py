"""Metrics: held-out accuracy per round and difficulty, throughput from the samples' own times, and an overview."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select
from sqlmodel import Session, col

from schemas.messages import TERMINAL_JOB_STATES
from schemas.tables import Adapter, DeadLetterRecord, EvalRecord, Job, Sample, Snapshot
from services.api.models import AccuracyPoint, AdapterRef, KeptPoint, Overview, Throughput
from services.api.queries.adapters import adapter_rounds, current_adapter
from services.api.queries.samples import BASE_MODEL
from services.store.queries import off_adapter



def accuracy_points(session: Session, *, suite: str | None = None, family: str | None = None) -> list[AccuracyPoint]:
    """Every evaluated (round, difficulty) point, by round then family then difficulty."""
    rounds = adapter_rounds(session)
    statuses: dict[str, str] = dict(session.exec(select(col(Adapter.id), col(Adapter.status))).all())
    query = select(EvalRecord)
    if suite:
        query = query.where(col(EvalRecord.suite) == suite)
    points = []
    for (record,) in session.exec(query).all():
        if record.adapter_id == BASE_MODEL:
            round_no = 0
        elif record.adapter_id in rounds:
            round_no = rounds[record.adapter_id]
        else:
            continue  # an evaluation of an adapter the store does not know (yet): no round to put it in
        for score in record.scores or []:
            if not isinstance(score, dict) or (family and score.get("family") != family):
                continue
            points.append(
                AccuracyPoint(
                    round=round_no,
                    adapter_id=record.adapter_id,
                    adapter_status=statuses.get(record.adapter_id),
                    suite=record.suite,
                    family=str(score.get("family", "")),
                    difficulty=int(score.get("difficulty", 0)),
                    accuracy=float(score.get("accuracy", 0.0)),
                    n=int(score.get("n", 0)),
                )
            )
    points.sort(key=lambda p: (p.round, p.family, p.difficulty, p.suite))
    return points


def kept_points(session: Session, *, family: str | None = None) -> list[KeptPoint]:
    """Per family and round: the kept samples whose true answer is known, and how many of their labels are right."""
    query = (select(col(Sample.family), col(Sample.round), func.count(),
                    func.sum(case((col(Sample.label) == Sample.true_answer, 1), else_=0)))
             .where(col(Sample.status) == "accepted", col(Sample.true_answer).is_not(None))
             .group_by(col(Sample.family), col(Sample.round)).order_by(col(Sample.round), col(Sample.family)))
    if family:
        query = query.where(col(Sample.family) == family)
    return [KeptPoint(round=r, family=f, kept=n, right=int(right or 0), precision=(right or 0) / n if n else None)
            for f, r, n, right in session.exec(query).all()]


def throughput(session: Session, *, window_s: int = 300, now: datetime | None = None) -> Throughput:
    """Samples generated, verified and accepted in the last ``window_s`` seconds (by the events' times)."""
    since = (now or datetime.now(UTC)) - timedelta(seconds=window_s)

    def count(*where) -> int:
        return session.exec(select(func.count()).select_from(Sample).where(*where)).one()[0]

    generated = count(col(Sample.generated_at) >= since)
    verified = count(col(Sample.verdict_at) >= since)
    accepted = count(col(Sample.verdict_at) >= since, col(Sample.status) == "accepted")
    totals: dict[str, int] = dict(
        session.exec(select(col(Sample.status), func.count()).group_by(col(Sample.status))).all()
    )
    minutes = window_s / 60
    return Throughput(
        window_s=window_s,
        generated=generated,
        verified=verified,
        accepted=accepted,
        generated_per_min=generated / minutes,
        verified_per_min=verified / minutes,
        accepted_per_min=accepted / minutes,
        acceptance_rate=accepted / verified if verified else None,
        totals=totals,
    )


def overview(session: Session, *, window_s: int = 300) -> Overview:
    current = current_adapter(session)
    latest_round = session.exec(select(func.max(col(Sample.round)))).one()[0]
    difficulty = None
    if latest_round is not None:
        difficulty = session.exec(
            select(func.max(col(Sample.difficulty))).where(col(Sample.round) == latest_round)
        ).one()[0]

    def count(table, *where) -> int:
        return session.exec(select(func.count()).select_from(table).where(*where)).one()[0]

    return Overview(
        current_adapter=AdapterRef(id=current.id, status=current.status) if current else AdapterRef(id=None),
        round=latest_round,
        difficulty=difficulty,
        throughput=throughput(session, window_s=window_s),
        adapters=count(Adapter),
        snapshots=count(Snapshot),
        dead_letters=count(DeadLetterRecord),
        jobs_running=count(Job, col(Job.state).not_in(TERMINAL_JOB_STATES)),
        off_adapter=off_adapter(session.connection(), window_s=window_s).text(),
    )
