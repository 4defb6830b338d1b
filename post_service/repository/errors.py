"""Constraint violations the services turn into clean problems."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError

__all__ = ["MissingReference", "references_must_exist"]

_FOREIGN_KEY_VIOLATION = "23503"


class MissingReference(Exception):
    """A row referenced the one that a concurrent transaction just deleted (e.g. the post)."""

    def __init__(self, constraint: str | None) -> None:
        super().__init__(f"referenced row is gone ({constraint or 'unknown constraint'})")
        self.constraint = constraint


@contextmanager
def references_must_exist() -> Iterator[None]:
    """Raise :class:`MissingReference` instead of a foreign-key IntegrityError.

    The existence check before an insert cannot see a delete that commits in between; the
    foreign key does. The transaction is aborted either way, so the caller must not go on.
    """
    try:
        yield
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != _FOREIGN_KEY_VIOLATION:
            raise
        constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        raise MissingReference(constraint) from exc
