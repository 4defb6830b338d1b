"""The service token that guards every ``/internal/*`` API (callers: other Murmur services)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from common.errors import Forbidden, Unauthorized
from common.settings import ServiceSettings

__all__ = ["INTERNAL_TOKEN_HEADER", "InternalCaller", "internal_headers", "require_internal_token"]

INTERNAL_TOKEN_HEADER = "X-Internal-Token"  # noqa: S105 (a header name, not a secret)


def internal_headers(settings: ServiceSettings) -> dict[str, str]:
    """Headers a caller sends with every internal request."""
    return {INTERNAL_TOKEN_HEADER: settings.internal_token.get_secret_value()}


async def require_internal_token(
    request: Request,
    token: Annotated[
        str | None,
        Header(alias=INTERNAL_TOKEN_HEADER, description="The shared internal service token"),
    ] = None,
) -> None:
    """401 without the token, 403 with a wrong one; compared in constant time.

    NetworkPolicy limits who can connect, not which paths they ask for: the ingress controller
    reaches the service port, so the token is what keeps ``/internal`` from the public.
    """
    if not token:
        raise Unauthorized("Internal API: service token required")
    settings: ServiceSettings = request.app.state.settings
    expected = settings.internal_token.get_secret_value().encode()
    if not hmac.compare_digest(token.encode(), expected):
        raise Forbidden("Internal API: invalid service token")


InternalCaller = Depends(require_internal_token)
