"""A TCP proxy inside the test's event loop that can lose its connections silently.

``blackhole()`` models what a client sees when a NAT, a load balancer or a moved pod drops a
connection's state: the server side is gone, yet no FIN or RST reaches the client, whose socket
stays open and whose requests are never answered. New connections go through as before.
``pause()`` holds every byte in both directions until ``resume()``: a slow network or a stalled
server, with the connections kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["TcpProxy", "tcp_proxy"]


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._orphans: list[asyncio.StreamWriter] = []
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        self._pairs.append((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def pause(self) -> None:
        """Hold what either side sends (read, not forwarded) until ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def blackhole(self) -> int:
        """Drop every current connection without telling the client; returns how many."""
        pairs, self._pairs = self._pairs, []
        for task in list(self._tasks):
            task.cancel()
        for client, upstream in pairs:
            upstream.transport.abort()
            # The client side is kept open, never closed: it is what the client cannot see.
            self._orphans.append(client)
        return len(pairs)

    def close_all(self) -> None:
        for client, upstream in self._pairs:
            client.transport.abort()
            upstream.transport.abort()
        for client in self._orphans:
            client.transport.abort()
        self._pairs, self._orphans = [], []


@contextlib.asynccontextmanager
async def tcp_proxy(upstream_host: str, upstream_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(upstream_host, upstream_port)
    server = await asyncio.start_server(proxy._on_client, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        proxy.close_all()
        for task in list(proxy._tasks):
            task.cancel()
        await server.wait_closed()
