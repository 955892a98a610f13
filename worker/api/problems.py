"""RFC 9457 problem details: one stable `type` per case, never a stack trace, SQL, content or credential."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

MEDIA_TYPE = "application/problem+json"
# Relative URI references (RFC 9457 §3.1.1): stable names a client can switch on.
TYPES = {
    400: "/problems/bad-request",
    401: "/problems/unauthorized",
    403: "/problems/forbidden",
    404: "/problems/not-found",
    405: "/problems/method-not-allowed",
    409: "/problems/conflict",
    413: "/problems/payload-too-large",
    415: "/problems/unsupported-media-type",
    422: "/problems/invalid-input",
    500: "/problems/internal",
    503: "/problems/unavailable",
}
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    500: "Internal error",
    503: "Service unavailable",
}
log = structlog.get_logger("worker.api")
# The database is down, unreachable, or the pool had no connection in time: 503, not a bug (500).
UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, ConnectionError, TimeoutError, OSError,
)
WWW_AUTHENTICATE = 'Bearer realm="llm-persistence-worker"'


class InvalidParam(BaseModel):
    """Where an input was invalid, and why (never the value itself)."""

    name: str
    reason: str


class Problem(BaseModel):
    """An `application/problem+json` body."""

    type: str
    title: str
    status: int
    detail: str | None = None
    invalid_params: list[InvalidParam] | None = None


class ApiError(Exception):
    """Raised by handlers and dependencies; rendered as a problem."""

    def __init__(self, status: int, detail: str, *, problem_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.problem_type = problem_type or TYPES[status]


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    problem_type: str | None = None,
    invalid_params: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type or TYPES.get(status, "about:blank"),
        "title": TITLES.get(status, "Error"),
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if invalid_params is not None:
        body["invalid_params"] = invalid_params
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": WWW_AUTHENTICATE}
    return Response(orjson.dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _content(description: str) -> dict[str, Any]:
    return {"description": description, "model": Problem, "content": {MEDIA_TYPE: {}}}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route can answer."""
    return {status: _content(TITLES[status]) for status in statuses}


def install(app: FastAPI) -> None:
    """Render every error the app can raise as a problem."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return problem_response(exc.status, exc.detail, problem_type=exc.problem_type)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # NOTE: the offending value (`input`) is left out: it may be a password or content.
        params = [
            {"name": ".".join(str(part) for part in error.get("loc", ())), "reason": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        return problem_response(422, "The request is invalid.", invalid_params=params)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        return problem_response(exc.status_code, _safe_detail(exc), headers=headers or None)

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning("database_unavailable", error=type(exc).__name__)
        return problem_response(503, "The database cannot be reached; try again shortly.",
                                headers={"Retry-After": "1"})

    async def unexpected(request: Request, exc: Exception) -> Response:
        # NOTE: the exception's class only: its text can hold SQL or a value from the request.
        log.error("request_failed", error=type(exc).__name__)
        return problem_response(500, "The server could not answer this request.")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for unreachable in UNAVAILABLE:
        app.add_exception_handler(unreachable, unavailable)
    app.add_exception_handler(Exception, unexpected)


def _safe_detail(exc: StarletteHTTPException) -> str:
    return exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
