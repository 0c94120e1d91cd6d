"""How the API fails: a JSON body ``{"detail": "<a sentence>"}`` and a 4xx for anything the caller can fix.

Bad input is a 4xx with a message (422 for values the schema refuses, 400 for values the database refuses,
404 for ids that do not exist, 409 for a state that does not allow the action); a server the API depends on
being unreachable is a 503, so a client knows to retry.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kafka.errors import KafkaError
from sqlalchemy.exc import DataError, OperationalError, StatementError

log = logging.getLogger(__name__)


class NotFound(Exception):
    """An id the caller named does not exist (404); the message names it."""


class Conflict(Exception):
    """The entity exists but its state does not allow the action (409); the message says why."""


async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


def _location(loc: tuple | list) -> str:
    parts = [str(part) for part in loc if part not in ("body",)] or ["body"]
    return ".".join(parts)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": error.get("type"),
        }
        for error in exc.errors()
    ]
    message = "; ".join(f"{_location(error['loc'])}: {error['msg']}" for error in errors[:5]) or "invalid request"
    return JSONResponse(status_code=422, content={"detail": message, "errors": errors})


async def _database_refused(_request: Request, exc: DataError) -> JSONResponse:
    return JSONResponse(status_code=400, content={"detail": f"the database refused a value: {exc.orig}"[:500]})


async def _not_unicode(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=400, content={"detail": "the request holds text that is not valid Unicode (a lone surrogate)"}
    )


async def _statement_failed(request: Request, exc: StatementError) -> JSONResponse:
    if isinstance(exc.orig, UnicodeError):  # the driver could not encode a parameter
        return await _not_unicode(request, exc)
    raise exc


async def _database_unavailable(_request: Request, exc: OperationalError) -> JSONResponse:
    log.warning("store unavailable: %s", exc)
    return JSONResponse(status_code=503, content={"detail": "the dataset store is unavailable; retry later"})


async def _kafka_unavailable(_request: Request, exc: KafkaError) -> JSONResponse:
    log.warning("Kafka unavailable: %s", exc)
    return JSONResponse(
        status_code=503, content={"detail": f"the event bus is unavailable ({type(exc).__name__}); retry later"}
    )


def install_error_handlers(app: FastAPI) -> None:
    # Starlette calls a handler only with the exception class it is registered for, but its types say every handler
    # takes any Exception: the ignores are for handlers typed on their own class.
    app.add_exception_handler(NotFound, _not_found)  # type: ignore[arg-type]
    app.add_exception_handler(Conflict, _conflict)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, _database_refused)  # type: ignore[arg-type]
    app.add_exception_handler(UnicodeEncodeError, _not_unicode)
    app.add_exception_handler(StatementError, _statement_failed)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _database_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(KafkaError, _kafka_unavailable)


_DESCRIPTIONS = {
    400: "A malformed request: a body that is not JSON, text that is not valid Unicode, a value the store refuses",
    401: "No or a wrong bearer token",
    403: "Mutating endpoints are disabled (no LOOP_API_TOKEN configured)",
    404: "No such entity",
    409: "The entity's state does not allow this",
    422: "The request does not match the schema",
    503: "The store or the event bus is unavailable",
}


def responses(*codes: int) -> dict[int | str, dict]:
    """The error responses of a route, for its OpenAPI description."""
    from services.api.models import ErrorBody

    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}
