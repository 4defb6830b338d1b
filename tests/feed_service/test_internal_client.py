"""feed_service's clients of the internal APIs survive callers that give up (overload)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from feed_service.repository.sources import internal_client


@contextlib.asynccontextmanager
async def slow_server(delay_s: float) -> AsyncIterator[str]:
    """A raw HTTP/1.1 server on a free port answering every request after delay_s."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = await reader.read(4096)
                    if not chunk:
                        return
                    head += chunk
                await asyncio.sleep(delay_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def churn(client: httpx.AsyncClient) -> None:
    """Bursts of callers cancelled at every stage of their requests (clients hanging up)."""
    for round_ in range(30):
        tasks = [asyncio.create_task(client.get("/")) for _ in range(8)]
        await asyncio.sleep(0.001 * (round_ % 5))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def served_after_churn(client: httpx.AsyncClient) -> int:
    await churn(client)
    await asyncio.sleep(1.0)  # let cancelled work settle
    ok = 0
    for _ in range(5):
        with contextlib.suppress(httpx.PoolTimeout):
            ok += (await client.get("/")).status_code == 200
    return ok


async def test_internal_client_keeps_serving_after_cancelled_callers() -> None:
    """With a pool capped below the burst (httpx.Limits(max_connections=2)) this churn leaves
    the pool failing every request with PoolTimeout for good (encode/httpcore#1093): 0 of 5
    served when this test was written; that check is not in the suite because how many slots
    leak depends on timing. httpx's default cap (100) fails the same way under an overload of
    more than 100 concurrent reads, which is what the benchmark ran into."""
    async with slow_server(0.005) as url, internal_client(url, timeout_s=2.0) as client:
        assert await served_after_churn(client) == 5
