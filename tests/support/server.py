"""Serve an ASGI app over real HTTP on a free port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

# One definition for the tree (the local runner picks its ports with it too).
from deploy.local.process import free_port as free_port


@asynccontextmanager
async def serve(
    app: ASGIApp, *, lifespan: Literal["auto", "on", "off"] = "off"
) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 and yield its base URL (``http://127.0.0.1:N``)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan=lifespan, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # surfaces the start-up error
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
