"""A whole platform on free ports: five services as processes and the nginx gateway."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.mailpit import MailpitServer
from deploy.platform.runner import SERVICES, Backing, Platform


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
async def platform(
    make_database: Any,
    redis_server: Any,
    make_vhost: Any,
    neo4j: Any,
    mailpit: MailpitServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    backing = Backing(
        database_urls={
            "auth": await make_database("e2e_auth"),
            "post": await make_database("e2e_post"),
        },
        redis_url=f"redis://127.0.0.1:{redis_server.port}",
        amqp_url=await make_vhost("e2e"),
        neo4j_uri=neo4j.bolt_uri,
        smtp_host=mailpit.smtp_host,
        smtp_port=mailpit.smtp_port,
    )
    state: Path = tmp_path_factory.mktemp("platform")
    platform = Platform(
        backing=backing,
        state_dir=state,
        ports={service: _free_port() for service in SERVICES},
        gateway_port=_free_port(),
        environment="test",
        extra_env={"AUTH_BCRYPT_ROUNDS": "4"},
    )
    try:
        await asyncio.to_thread(platform.start, 120.0)
        yield platform
    finally:
        await asyncio.to_thread(platform.stop)


@pytest.fixture
async def gateway(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10.0) as client:
        yield client
