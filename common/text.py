"""Text a client sends that Murmur stores or queries: the one check every service applies.

PostgreSQL ``text`` cannot hold NUL, and a lone UTF-16 surrogate (JSON ``"\\ud800"``, which
``json.loads`` accepts) cannot be encoded as UTF-8 for the wire to any store. Either one would
fail deep in a driver as a 500; refused at the edge it is a 422 like any other bad field.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

__all__ = ["StorableText", "check_storable"]


def check_storable(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` (a 422 in a request model) when no store holds it."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must not contain lone UTF-16 surrogates") from None
    return value


# Usable as a body field, a query or a path parameter: Annotated[StorableText, Query(...)].
StorableText = Annotated[str, AfterValidator(check_storable)]
