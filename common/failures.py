"""Which failures are transient: the one list of "a dependency is down or busy" errors.

HTTP answers them with 503 and Retry-After (``common.errors.UnhandledErrorMiddleware``);
consumers retry them with back-off instead of dead-lettering (``common.messaging.consumer``);
relays and workers back off on them. Anything else is a bug or bad data: a 500, or the dead
queue.

The client libraries are not imported here. An exception of a library can only exist once that
library is loaded, so :func:`is_transient` looks only at loaded modules; only
:func:`dependency_errors` (for ``except`` clauses) imports them, once.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Final

__all__ = [
    "PermanentError",
    "TransientError",
    "dependency_errors",
    "is_transient",
]


class TransientError(Exception):
    """Raised to say: retry later with back-off (a consumer retries, HTTP answers 503)."""


class PermanentError(Exception):
    """Raised to say: this can never succeed (a consumer dead-letters the message at once).

    Anywhere in an exception's ``__cause__`` chain it wins over a transient cause.
    """


# (module, class names): always a dependency down or busy. By name, so that importing this
# module costs nothing; the modules are the ones defining (or re-exporting) the classes.
_DEPENDENCY_ERRORS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("builtins", ("OSError", "ConnectionError", "TimeoutError")),
    (__name__, ("TransientError",)),
    (
        "asyncpg.exceptions",
        (
            "PostgresConnectionError",
            "ConnectionDoesNotExistError",
            "CannotConnectNowError",
            "TooManyConnectionsError",
            # A connection left mid-operation by a server that went away: "cannot switch to
            # state 11; another operation (2) is in progress", "connection is closed".
            "InterfaceError",
            "InternalClientError",
            # Busy, or a lost race: the same statement can succeed when retried.
            "SerializationError",
            "DeadlockDetectedError",
        ),
    ),
    (
        "sqlalchemy.exc",
        ("OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"),
    ),
    ("redis.exceptions", ("ConnectionError", "TimeoutError", "ClusterDownError", "TryAgainError")),
    ("aiormq.exceptions", ("AMQPConnectionError", "ChannelInvalidStateError")),
    ("aio_pika.exceptions", ("AMQPConnectionError",)),
    ("neo4j.exceptions", ("ServiceUnavailable", "SessionExpired", "TransientError")),
    ("httpx", ("TransportError",)),
    ("limits.errors", ("StorageError",)),
)


def _classes(
    table: tuple[tuple[str, tuple[str, ...]], ...], module: Callable[[str], ModuleType | None]
) -> tuple[type[Exception], ...]:
    def found() -> Iterator[type[Exception]]:
        for name, class_names in table:
            loaded = module(name)
            if loaded is not None:
                yield from (getattr(loaded, class_name) for class_name in class_names)

    return tuple(dict.fromkeys(found()))


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:  # a service without that library cannot meet its errors
        return None


@functools.cache
def dependency_errors() -> tuple[type[Exception], ...]:
    """The exception classes meaning "a dependency is down or busy" (imports their libraries).

    For ``except`` clauses; to classify an exception use :func:`is_transient`, which also
    follows causes and honours :class:`PermanentError`.
    """
    return _classes(_DEPENDENCY_ERRORS, _import)


def _loaded_dependency_errors() -> tuple[type[Exception], ...]:
    if dependency_errors.cache_info().currsize:
        return dependency_errors()
    # Not cached: a library loaded later has its classes found by the next call.
    return _classes(_DEPENDENCY_ERRORS, sys.modules.get)


def _conditionally_transient(exc: BaseException) -> bool:
    """SQLAlchemy's wrappers say what failed in their cause or ``connection_invalidated``; an
    HTTP status error is transient for 5xx and 429."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.DBAPIError):
        return bool(exc.connection_invalidated)
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        status: int = exc.response.status_code
        return status >= 500 or status == 429
    return False


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is worth retrying: a dependency down or busy, not a bug or bad data.

    Walks the ``__cause__`` chain (SQLAlchemy and other wrappers hide the driver's exception);
    :class:`PermanentError` anywhere in the chain wins.
    """
    known = _loaded_dependency_errors()
    seen: set[int] = set()
    current: BaseException | None = exc
    transient = False
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PermanentError):
            return False
        if isinstance(current, known) or _conditionally_transient(current):
            transient = True
        # Only explicit causes: an error raised while handling a ConnectionError is not
        # itself about a dependency being down.
        current = current.__cause__
    return transient
