"""The gateway routing table: the one source of truth for local nginx and the chart's Ingress.

Every pattern is an anchored PCRE that matches the request path (no query string). The patterns
are mutually exclusive, so no path matches two routes: the result never depends on the order in
which nginx or ingress-nginx (which sorts regex locations itself) evaluates them. Negative
lookaheads keep `/users/by-username/...` and the SSE stream apart from their neighbours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

ServiceName = Literal["auth", "post", "network", "feed", "email"]

SERVICES: Final[tuple[ServiceName, ...]] = ("auth", "post", "network", "feed", "email")
ROUTED_SERVICES: Final[tuple[ServiceName, ...]] = ("auth", "post", "network", "feed")
DEFAULT_PORTS: Final[dict[ServiceName, int]] = {
    "auth": 8001,
    "post": 8002,
    "network": 8003,
    "feed": 8004,
    "email": 8005,
}

_USER_ID = r"(?!by-username/)[^/]+"


@dataclass(frozen=True)
class Route:
    """One row of the table: paths matching `pattern` go to `service`."""

    name: str
    pattern: str
    service: ServiceName
    # Long-lived responses (SSE): no proxy buffering and a long read timeout.
    streaming: bool = False

    def matches(self, path: str) -> bool:
        return re.fullmatch(self.pattern.removeprefix("^").removesuffix("$"), path) is not None


ROUTES: Final[tuple[Route, ...]] = (
    Route("jwks", r"^/\.well-known/jwks\.json$", "auth"),
    Route("auth", r"^/api/v1/auth/.*$", "auth"),
    Route("me", r"^/api/v1/me$", "auth"),
    Route("users-search", r"^/api/v1/users$", "auth"),
    Route("user", r"^/api/v1/users/[^/]+$", "auth"),
    Route("user-by-username", r"^/api/v1/users/by-username/[^/]+$", "auth"),
    Route("me-following", r"^/api/v1/me/following/.*$", "network"),
    Route("me-suggestions", r"^/api/v1/me/suggestions$", "network"),
    Route(
        "user-graph", rf"^/api/v1/users/{_USER_ID}/(followers|following|relationship)$", "network"
    ),
    Route("posts", r"^/api/v1/posts(/.*)?$", "post"),
    Route("comments", r"^/api/v1/comments/.*$", "post"),
    Route("user-posts", rf"^/api/v1/users/{_USER_ID}/posts$", "post"),
    Route("me-feed", r"^/api/v1/me/feed$", "feed"),
    Route("notifications", r"^/api/v1/me/notifications(/(?!stream$).*)?$", "feed"),
    Route("notifications-stream", r"^/api/v1/me/notifications/stream$", "feed", streaming=True),
)


def route_for(path: str) -> Route | None:
    """The route a path takes, or None (the gateway answers 404)."""
    hits = [route for route in ROUTES if route.matches(path)]
    if len(hits) > 1:
        raise AssertionError(f"routes overlap on {path}: {[r.name for r in hits]}")
    return hits[0] if hits else None


def ingress_routes() -> dict[str, list[dict[str, object]]]:
    """The table as the chart reads it (deploy/helm/murmur/files/routes.json).

    ingress-nginx writes each regex path as `location ~* "^<path>"`, so the leading anchor is
    dropped here; Kubernetes also requires paths to start with "/".
    """
    return {
        "routes": [
            {
                "name": r.name,
                "path": r.pattern.removeprefix("^"),
                "service": r.service,
                "streaming": r.streaming,
            }
            for r in ROUTES
        ]
    }
