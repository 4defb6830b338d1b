"""The two pieces every pure ASGI middleware of ``common`` shares.

``HttpMiddleware`` lets lifespan and websocket scopes straight through, so a subclass only
writes its HTTP handling; ``ResponseTracker`` wraps ``send`` and remembers the response's
status, which tells a middleware whether it may still answer after an error.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HttpMiddleware", "ResponseTracker"]


class HttpMiddleware:
    """Pure ASGI middleware acting on HTTP requests only: subclasses implement ``handle``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class ResponseTracker:
    """``send`` that records the status of the response once it has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None

    @property
    def started(self) -> bool:
        """Half a response may be out: only closing the connection can tell the client."""
        return self.status is not None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)
