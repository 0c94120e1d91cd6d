"""The HTTP API and the web dashboard of the loop, as one FastAPI app.

``create_app(settings)`` builds it: the JSON API under ``/api`` (OpenAPI description at ``/api/openapi.json``,
interactive docs at ``/api/docs``), the dashboard's pages at ``/``, their files under ``/static``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy import Engine, text

from services.api.deps import DEFAULT_JOB_KINDS, ApiState, DbSession
from services.api.errors import install_error_handlers, responses
from services.api.lag import LagReporter
from services.api.pages import router as pages_router
from services.api.routes import router as api_router
from services.settings import Settings, get_settings
from services.store.db import open_store

STATIC_DIR = Path(__file__).resolve().parent / "pages" / "static"

DESCRIPTION = """Inspect the datasets the loop generated and steer it.

Reading needs nothing. Every mutating endpoint (promote, roll back, retrain, cancel, import) needs
`Authorization: Bearer <LOOP_API_TOKEN>`; when the server has no token configured they all answer 403.
Errors are `{"detail": "<what went wrong>"}`: 4xx for anything the caller can fix, 503 when the store or Kafka
cannot be reached. Promote, roll back and import publish events and answer 202: the store shows their effect once
the store writer has applied them.
"""


class Health(BaseModel):
    status: str
    store: str


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, job_kinds: dict[str, str] | None = None
) -> FastAPI:
    """The app for ``settings`` (default: the environment's). ``job_kinds`` maps the API's job names to Celery jobs."""
    settings = settings or get_settings()
    state = ApiState(
        settings=settings,
        engine=engine if engine is not None else open_store(settings),
        job_kinds={**DEFAULT_JOB_KINDS, **(job_kinds or {})},
        lag=LagReporter(settings),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        state.close()

    app = FastAPI(
        title="selfloop",
        version="1",
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.api = state
    install_error_handlers(app)

    @app.get("/api/health", response_model=Health, tags=["health"], responses=responses(503))
    def health(session: DbSession) -> Health:
        """Answers 200 when the store answers (the compose healthcheck)."""
        session.execute(text("SELECT 1"))
        return Health(status="ok", store="ok")

    app.include_router(api_router)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
