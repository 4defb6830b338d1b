"""RFC 9457 problem details: the exception hierarchy, its handlers and the request body limit."""

from __future__ import annotations

import http
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.asgi import HttpMiddleware, ResponseTracker
from common.failures import is_transient
from common.logging import get_logger

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "BadRequest",
    "BodySizeLimitMiddleware",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "ProblemError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnhandledErrorMiddleware",
    "Unprocessable",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
DEFAULT_RETRY_AFTER_S = 5

log = get_logger(__name__)


class ProblemJSONResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE


def _title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    type_: str = "about:blank",
    **extra: Any,
) -> JSONResponse:
    """A ``application/problem+json`` response; ``extra`` members go into the body."""
    body: dict[str, Any] = {"type": type_, "title": title or _title(status), "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    return ProblemJSONResponse(body, status_code=status, headers=headers)


class Problem(BaseModel):
    """The body of every error response (for OpenAPI documents and client tests)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


_PROBLEM_SCHEMA = Problem.model_json_schema()


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting the problem+json errors an endpoint can answer."""
    return {
        status: {
            "description": _title(status),
            "content": {PROBLEM_CONTENT_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


class ProblemError(Exception):
    """Raise anywhere in a request to answer with this problem."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    type: ClassVar[str] = "about:blank"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})
        self.errors = errors

    def extra(self) -> dict[str, Any]:
        """Extension members of the problem body."""
        return {"errors": self.errors} if self.errors is not None else {}

    def to_response(self) -> JSONResponse:
        return problem_response(
            self.status,
            self.title,
            self.detail,
            headers=self.headers or None,
            type_=self.type,
            **self.extra(),
        )


class BadRequest(ProblemError):
    status = 400
    title = "Bad Request"


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            detail, headers={"WWW-Authenticate": "Bearer", **(headers or {})}, errors=errors
        )


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"


class NotFound(ProblemError):
    status = 404
    title = "Not Found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(ProblemError):
    status = 413
    title = "Content Too Large"


class Unprocessable(ProblemError):
    status = 422
    title = "Unprocessable Content"


class TooManyRequests(ProblemError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(detail, headers={"Retry-After": str(self.retry_after)})


class ServiceUnavailable(ProblemError):
    status = 503
    title = "Service Unavailable"

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: int = DEFAULT_RETRY_AFTER_S,
        dependency: str | None = None,
    ) -> None:
        self.retry_after = max(1, int(retry_after))
        self.dependency = dependency
        super().__init__(detail, headers={"Retry-After": str(self.retry_after)})

    def extra(self) -> dict[str, Any]:
        return {"dependency": self.dependency} if self.dependency else {}


async def _problem_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return exc.to_response()


async def _validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only location and message: the offending input may be a password or a token.
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", ""))} for err in exc.errors()
    ]
    return problem_response(
        422, "Unprocessable Content", "Request validation failed", errors=errors
    )


async def _http_exception_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    title = _title(exc.status_code)
    detail: str | None = exc.detail if isinstance(exc.detail, str) else None
    if detail == title:
        detail = None
    return problem_response(exc.status_code, title, detail, headers=headers or None)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` an RFC 9457 problem.

    Unexpected exceptions, transient failures among them (503), are not handled here but by
    :class:`UnhandledErrorMiddleware`: a handler for ``Exception`` would run inside Starlette's
    ServerErrorMiddleware, which re-raises after answering, and uvicorn then drops the
    keep-alive connection.
    """
    app.add_exception_handler(ProblemError, _problem_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(HTTPException, _http_exception_handler)


class UnhandledErrorMiddleware(HttpMiddleware):
    """Pure ASGI: an exception no handler took becomes a problem, and stops here.

    A transient failure (:func:`common.failures.is_transient`: a dependency down or busy, the
    list consumers retry) is a 503 with Retry-After; anything else a 500. Classified here, by
    the exception's cause chain, rather than by a handler per class: no client library has to
    be imported to register one, and wrappers (SQLAlchemy's DBAPIError, an HTTPStatusError)
    are judged by what they carry.

    Swallowing it (after logging) lets uvicorn keep the connection open. If it re-raised, uvicorn
    would close the connection after the 500 had been sent, while a proxy that pools upstream
    connections (the gateway's nginx) may already have picked that connection for the next
    client's request, which then fails with 502 - and nginx does not retry a POST or PATCH.
    The body says nothing about the cause: messages may carry SQL parameters or hosts.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracker = ResponseTracker(send)
        try:
            await self.app(scope, receive, tracker.send)
        except Exception as exc:
            if is_transient(exc):
                # The type only: messages of database errors embed SQL parameters (emails).
                log.warning(
                    "dependency_unavailable",
                    error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                    path=scope.get("path"),
                )
                response = problem_response(
                    503,
                    "Service Unavailable",
                    "A backing service is unavailable, retry later",
                    headers={"Retry-After": str(DEFAULT_RETRY_AFTER_S)},
                )
            else:
                log.error("unhandled_exception", path=scope.get("path"), exc_info=exc)
                response = problem_response(500, "Internal Server Error")
            if tracker.started:
                raise
            await response(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing lets it through."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Request body too large")


class BodySizeLimitMiddleware(HttpMiddleware):
    """Pure ASGI middleware answering 413 for request bodies over ``max_body_bytes``.

    A declared Content-Length over the limit is refused before the app runs; streamed (chunked)
    bodies are counted as the app reads them.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = 1_048_576) -> None:
        super().__init__(app)
        self.max_body_bytes = max_body_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        tracker = ResponseTracker(send)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, tracker.send)
        except _BodyTooLarge:
            if tracker.started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PayloadTooLarge(
            f"Request body exceeds {self.max_body_bytes} bytes"
        ).to_response()
        # The client may still be sending; closing lets the server drop the rest of the body.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
