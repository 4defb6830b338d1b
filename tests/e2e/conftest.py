"""A whole platform on free ports: five services as processes and the nginx gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from deploy.platform.runner import SERVICES, Platform
from tests.conftest import MakeBacking
from tests.support.server import free_port

LIMITED = ("auth", "post", "network")  # the services with rate limits on Redis


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    """Extra environment of the module's platform; a test module overrides it (rate limits)."""
    return {}


@pytest.fixture(scope="module")
async def platform(
    platform_env: dict[str, str],
    make_backing: MakeBacking,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    backing = await make_backing("e2e")
    state: Path = tmp_path_factory.mktemp("platform")
    # Every module's platform shares the session's Redis: its own rate-limit buckets, so one
    # module's logins from 127.0.0.1 do not count against the next module's.
    run = uuid.uuid4().hex[:12]
    buckets = {f"{s.upper()}_RATELIMIT_KEY_PREFIX": f"e2e:{run}:{s}" for s in LIMITED}
    platform = Platform(
        backing=backing,
        state_dir=state,
        ports={service: free_port() for service in SERVICES},
        gateway_port=free_port(),
        environment="test",
        extra_env={"AUTH_BCRYPT_ROUNDS": "4", **buckets, **platform_env},
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
