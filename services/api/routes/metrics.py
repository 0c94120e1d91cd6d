"""Metrics: held-out accuracy per round and difficulty, throughput, Kafka consumer lag, and the overview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.api.deps import DbSession, State
from services.api.errors import responses
from services.api.models import AccuracyPoint, KeptPoint, LagReport, Overview, Throughput
from services.api.queries.metrics import accuracy_points, kept_points, overview, throughput

router = APIRouter(tags=["metrics"])

Window = Annotated[int, Query(ge=10, le=7 * 24 * 3600, description="Seconds back from now.")]
Name = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]


@router.get("/overview", response_model=Overview, responses=responses(422))
def read_overview(session: DbSession, window_s: Window = 300) -> Overview:
    """Current adapter, round and difficulty, live rates, and counts: what the dashboard's front page shows."""
    return overview(session, window_s=window_s)


@router.get("/metrics/accuracy", response_model=list[AccuracyPoint], responses=responses(422))
def read_accuracy(session: DbSession, suite: Name = None, family: Name = None) -> list[AccuracyPoint]:
    """Held-out accuracy of each evaluated adapter (its round) per family and difficulty."""
    return accuracy_points(session, suite=suite, family=family)


@router.get("/metrics/kept", response_model=list[KeptPoint], responses=responses(422))
def read_kept(session: DbSession, family: Name = None) -> list[KeptPoint]:
    """Per family and round, the kept samples whose true answer is known and the share labelled with it: how far the
    verifiers' label-free checks can be trusted (measurement only; the truth decided nothing)."""
    return kept_points(session, family=family)


@router.get("/metrics/throughput", response_model=Throughput, responses=responses(422))
def read_throughput(session: DbSession, window_s: Window = 300) -> Throughput:
    """Samples generated, verified and accepted per minute over the window."""
    return throughput(session, window_s=window_s)


@router.get("/metrics/lag", response_model=LagReport)
def read_lag(state: State) -> LagReport:
    """Messages each consumer group (store-writer, verifiers, generators) has yet to process, per topic."""
    return state.lag.report()
