"""``RateLimiter`` against the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.exceptions
from fastapi import APIRouter, Request

from common.app import create_app
from common.errors import TooManyRequests
from common.ratelimit import RateLimiter, client_key
from common.settings import ServiceSettings
from tests.support.server import free_port


@pytest.fixture
async def limiter(redis_url: str) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(redis_url)
    yield limiter
    await limiter.close()


async def test_allows_n_hits_then_raises_with_retry_after(limiter: RateLimiter) -> None:
    who = uuid.uuid4().hex
    for _ in range(3):
        await limiter.hit("3/minute", "login", who)
    with pytest.raises(TooManyRequests) as info:
        await limiter.hit("3/minute", "login", who)
    assert 1 <= info.value.retry_after <= 60
    assert info.value.headers["Retry-After"] == str(info.value.retry_after)


async def test_identifiers_are_counted_apart(limiter: RateLimiter) -> None:
    alice, bob = uuid.uuid4().hex, uuid.uuid4().hex
    await limiter.hit("1/minute", "login", alice)
    await limiter.hit("1/minute", "login", bob)
    await limiter.hit("1/minute", "resend", alice)
    with pytest.raises(TooManyRequests):
        await limiter.hit("1/minute", "login", alice)


async def test_reset_forgets_hits(limiter: RateLimiter) -> None:
    who = uuid.uuid4().hex
    await limiter.hit("1/hour", "login", who)
    with pytest.raises(TooManyRequests) as info:
        await limiter.hit("1/hour", "login", who)
    assert 3000 < info.value.retry_after <= 3600
    await limiter.reset("1/hour", "login", who)
    await limiter.hit("1/hour", "login", who)


async def test_endpoint_answers_429_then_503_when_redis_is_down(redis_url: str) -> None:
    router = APIRouter()
    who = uuid.uuid4().hex

    @router.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        await request.app.state.limiter.hit("5/minute", "login", who)
        return {"ok": True}

    app = create_app(name="ratelimit-test", settings=ServiceSettings(), routers=[router])
    app.state.limiter = RateLimiter(redis_url)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            statuses = [(await client.post("/login")).status_code for _ in range(5)]
            assert statuses == [200] * 5
            limited = await client.post("/login")
            assert limited.status_code == 429
            assert limited.headers["content-type"] == "application/problem+json"
            assert 1 <= int(limited.headers["retry-after"]) <= 60

            await app.state.limiter.close()
            app.state.limiter = RateLimiter(f"redis://127.0.0.1:{free_port()}/0")
            down = await client.post("/login")
            assert down.status_code == 503
            assert int(down.headers["retry-after"]) > 0
    finally:
        await app.state.limiter.close()


async def test_an_empty_rule_is_no_limit(limiter: RateLimiter) -> None:
    who = uuid.uuid4().hex
    for _ in range(5):
        await limiter.hit("", "posts", who)
    await limiter.reset("", "posts", who)


async def test_fail_open_lets_hits_through_while_redis_is_down() -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    open_limiter = RateLimiter(down, fail_open=True)
    closed_limiter = RateLimiter(down)
    try:
        await open_limiter.hit("1/minute", "posts", "alice")
        await open_limiter.hit("1/minute", "posts", "alice")
        with pytest.raises(redis.exceptions.ConnectionError):
            await closed_limiter.hit("1/minute", "login", "alice")
    finally:
        await open_limiter.close()
        await closed_limiter.close()


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_client_key_groups_an_ipv6_64(ip: str, key: str) -> None:
    assert client_key(ip) == key
