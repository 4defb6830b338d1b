"""RFC 9457 problem details: the exception hierarchy, its handlers and the request body limit."""

from __future__ import annotations

import http
from collections.abc import Iterator
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    "dependency_errors",
    "install_problem_handlers",
    "is_dependency_error",
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


def _optional_classes() -> Iterator[type[Exception]]:
    """Connection-level errors of the client libraries Murmur uses (each import optional)."""
    try:
        import asyncpg

        yield asyncpg.PostgresConnectionError
        yield asyncpg.ConnectionDoesNotExistError
        yield asyncpg.CannotConnectNowError
        yield asyncpg.TooManyConnectionsError
        # A connection left mid-operation by a server that went away: "cannot switch to
        # state 11; another operation (2) is in progress", "connection is closed".
        yield asyncpg.InterfaceError
        yield asyncpg.InternalClientError
    except ImportError:
        pass
    try:
        import sqlalchemy.exc

        yield sqlalchemy.exc.OperationalError
        yield sqlalchemy.exc.InterfaceError
        yield sqlalchemy.exc.DisconnectionError
        yield sqlalchemy.exc.TimeoutError  # connection pool exhausted
    except ImportError:
        pass
    try:
        import redis.exceptions

        yield redis.exceptions.ConnectionError
        yield redis.exceptions.TimeoutError
        yield redis.exceptions.ClusterDownError
        yield redis.exceptions.TryAgainError
    except ImportError:
        pass
    try:
        import aiormq.exceptions

        yield aiormq.exceptions.AMQPConnectionError
        yield aiormq.exceptions.ChannelInvalidStateError
    except ImportError:
        pass
    try:
        import aio_pika.exceptions

        yield aio_pika.exceptions.AMQPConnectionError
    except ImportError:
        pass
    try:
        import neo4j.exceptions

        yield neo4j.exceptions.ServiceUnavailable
        yield neo4j.exceptions.SessionExpired
        yield neo4j.exceptions.TransientError
    except ImportError:
        pass
    try:
        import httpx

        yield httpx.TransportError
    except ImportError:
        pass
    try:
        import limits.errors

        yield limits.errors.StorageError
    except ImportError:
        pass


_DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    *_optional_classes(),
)


def dependency_errors() -> tuple[type[Exception], ...]:
    """Exceptions meaning "a dependency is down": answered 503 with Retry-After, never 500.

    The one list of transient dependency errors: the consumers' retry
    (``common.messaging.is_transient``) classifies with :func:`is_dependency_error` too.
    """
    return _DEPENDENCY_ERRORS


def _wrapper_classes() -> Iterator[type[Exception]]:
    """Exception classes that may carry a dependency error as their cause."""
    try:
        import sqlalchemy.exc

        yield sqlalchemy.exc.DBAPIError
    except ImportError:
        pass


def _connection_invalidated(exc: BaseException) -> bool:
    try:
        import sqlalchemy.exc
    except ImportError:  # pragma: no cover - every service has SQLAlchemy
        return False
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


def is_dependency_error(exc: BaseException) -> bool:
    """Whether ``exc`` or an explicit cause of it means a dependency is down or unreachable.

    Walks the ``__cause__`` chain: SQLAlchemy wraps the driver's error in its own classes
    (asyncpg's InternalClientError arrives as ``sqlalchemy.exc.InternalError``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _DEPENDENCY_ERRORS) or _connection_invalidated(current):
            return True
        # Only explicit causes: an error raised while handling a ConnectionError is not
        # itself about a dependency being down.
        current = current.__cause__
    return False


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


async def _dependency_down_handler(request: Request, exc: Exception) -> JSONResponse:
    # The type only: messages of database errors embed SQL parameters (emails, hashes).
    log.warning(
        "dependency_unavailable",
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        path=request.url.path,
    )
    return problem_response(
        503,
        "Service Unavailable",
        "A backing service is unavailable, retry later",
        headers={"Retry-After": str(DEFAULT_RETRY_AFTER_S)},
    )


async def _wrapped_dependency_handler(request: Request, exc: Exception) -> JSONResponse:
    # SQLAlchemy's wrappers (DBAPIError, InternalError) say what failed only in their cause:
    # asyncpg's CannotConnectNowError arrives as a bare DBAPIError.
    if is_dependency_error(exc):
        return await _dependency_down_handler(request, exc)
    raise exc  # to UnhandledErrorMiddleware: a 500


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` an RFC 9457 problem.

    Unexpected exceptions are not handled here but by :class:`UnhandledErrorMiddleware`: a
    handler for ``Exception`` would run inside Starlette's ServerErrorMiddleware, which re-raises
    after answering, and uvicorn then drops the keep-alive connection.
    """
    app.add_exception_handler(ProblemError, _problem_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(HTTPException, _http_exception_handler)
    for exc_class in dependency_errors():
        app.add_exception_handler(exc_class, _dependency_down_handler)
    for wrapper in _wrapper_classes():
        app.add_exception_handler(wrapper, _wrapped_dependency_handler)


class UnhandledErrorMiddleware:
    """Pure ASGI: an exception no handler took becomes a problem 500, and stops here.

    Swallowing it (after logging) lets uvicorn keep the connection open. If it re-raised, uvicorn
    would close the connection after the 500 had been sent, while a proxy that pools upstream
    connections (the gateway's nginx) may already have picked that connection for the next
    client's request, which then fails with 502 - and nginx does not retry a POST or PATCH.
    The body says nothing about the cause: messages may carry SQL parameters or hosts.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error("unhandled_exception", path=scope.get("path"), exc_info=exc)
            if response_started:
                # Half a response is out: only closing the connection can tell the client.
                raise
            await problem_response(500, "Internal Server Error")(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing lets it through."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Request body too large")


class BodySizeLimitMiddleware:
    """Pure ASGI middleware answering 413 for request bodies over ``max_body_bytes``.

    A declared Content-Length over the limit is refused before the app runs; streamed (chunked)
    bodies are counted as the app reads them.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = 1_048_576) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PayloadTooLarge(
            f"Request body exceeds {self.max_body_bytes} bytes"
        ).to_response()
        # The client may still be sending; closing lets the server drop the rest of the body.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
