"""What a route needs, as FastAPI dependencies: the settings, a database session, the event producer, the token.

Everything lives on ``app.state`` (set by ``create_app``), so one process can serve several apps (the tests do).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from services.api.lag import LagReporter
from services.bus import EventProducer
from services.settings import Settings

#: The Celery job behind each of the API's job names: the retrain button submits ``job_kinds["retrain"]``.
DEFAULT_JOB_KINDS = {"retrain": "train_adapter"}


@dataclass
class ApiState:
    """The shared objects of one app: made once, used by every request."""

    settings: Settings
    engine: Engine
    job_kinds: dict[str, str]
    lag: LagReporter
    _producer: EventProducer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def producer(self) -> EventProducer:
        """The Kafka producer, connected on first use (a read-only API runs without Kafka)."""
        with self._lock:
            if self._producer is None:
                self._producer = EventProducer(self.settings, client_id="loop-api", linger_ms=0)
            return self._producer

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None
        self.lag.close()
        self.engine.dispose()


def get_state(request: Request) -> ApiState:
    return request.app.state.api


def get_session(state: Annotated[ApiState, Depends(get_state)]) -> Iterator[Session]:
    with Session(state.engine) as session:
        yield session


State = Annotated[ApiState, Depends(get_state)]
DbSession = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="LOOP_API_TOKEN of the server; required by every mutating endpoint.")


def require_token(state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Let the call through only with the configured bearer token; refuse every call when none is configured."""
    expected = state.settings.api_token
    if expected is None:
        raise HTTPException(status_code=403, detail="mutating endpoints are disabled: the server has no LOOP_API_TOKEN")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status_code=401,
            detail="this endpoint needs 'Authorization: Bearer <LOOP_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


Authorized = Depends(require_token)
