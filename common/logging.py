"""Structured JSON logging (structlog) and the per-request correlation id."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Message, Receive, Scope, Send
from structlog.types import EventDict, Processor, WrappedLogger

from common.asgi import HttpMiddleware

__all__ = [
    "CORRELATION_HEADER",
    "THIRD_PARTY_LOG_FLOORS",
    "CorrelationIdMiddleware",
    "add_trace_ids",
    "bind_correlation_id",
    "configure_logging",
    "correlation_id",
    "get_logger",
]

CORRELATION_HEADER = "X-Correlation-ID"
_REQUEST_ID_HEADER = "X-Request-ID"
# Incoming ids end up in every log line and in events: accept only short, plain tokens so a
# client cannot inject fake log fields or huge values.
_VALID_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_service_name = "murmur"

# Third-party loggers held at a floor whatever the service's level. At DEBUG, aiormq/aio_pika
# print raw AMQP frames and aiosmtplib the mail data (both carry verification and reset
# tokens), asyncpg and neo4j print query parameters, httpx/httpcore request URLs with their
# query strings (INFO included).
THIRD_PARTY_LOG_FLOORS: dict[str, int] = {
    "aiormq": logging.INFO,
    "aio_pika": logging.INFO,
    "aiosmtplib": logging.INFO,
    "asyncpg": logging.INFO,
    "neo4j": logging.INFO,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "uvicorn.access": logging.WARNING,
}


def _add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("service", _service_name)
    return event_dict


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add ``trace_id`` and ``span_id`` (hex, as Jaeger shows them) while a span is current.

    Lines written outside any span (every line while tracing is off) are unchanged.
    """
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(span_context.span_id))
    return event_dict


def _orjson_dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    return orjson.dumps(value, default=default).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record (ours and third-party stdlib ones) to stdout as one JSON line.

    Safe to call more than once (several apps in one test process): the last call wins.
    """
    global _service_name
    _service_name = service
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service,
        add_trace_ids,
    ]
    structlog.configure(
        processors=[
            # First: a line below the level is dropped before anything is added to or
            # formatted in it (the access log at WARNING costs a level check, not a chain).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # The stricter of the floor and the service's level: a floor below it would make these
    # loggers chattier than the rest of the service.
    for name, floor in THIRD_PARTY_LOG_FLOORS.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    # uvicorn installs its own plain-text handlers; route them through ours instead. Its access
    # log would duplicate ours (and print query strings, which may carry tokens), so mute it.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; ``log.info("event_name", key=value)``."""
    return structlog.stdlib.get_logger(name)


def bind_correlation_id(value: str | None) -> str:
    """Make ``value`` (or a fresh id when missing or malformed) the current correlation id."""
    if value is None or not _VALID_CORRELATION_ID.fullmatch(value):
        value = uuid.uuid4().hex
    correlation_id.set(value)
    structlog.contextvars.bind_contextvars(correlation_id=value)
    return value


class CorrelationIdMiddleware(HttpMiddleware):
    """Pure ASGI middleware: binds the request's correlation id and echoes it in the response."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        # Each request starts from a clean log context (keep-alive connections reuse the task).
        structlog.contextvars.clear_contextvars()
        cid = bind_correlation_id(
            headers.get(CORRELATION_HEADER) or headers.get(_REQUEST_ID_HEADER)
        )

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[CORRELATION_HEADER] = cid
            await send(message)

        await self.app(scope, receive, send_with_id)
