"""Through the real gateway: client addresses, internal APIs and security headers (issue 11)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from common.internal import INTERNAL_TOKEN_HEADER
from deploy.platform.runner import Platform
from tests.e2e.journey import bearer, read_mail_from, register_and_verify
from tests.support.mailpit import Mailpit

LOGIN_IP_LIMIT = 60  # auth's default rate_login_ip, per minute


@asynccontextmanager
async def client_at(platform: Platform, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client connecting from another loopback address: another client, as nginx sees it."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, transport=transport, timeout=10.0
    ) as client:
        yield client


async def failed_login(client: httpx.AsyncClient, forged_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forged_for} if forged_for else {}
    r = await client.post(
        "/api/v1/auth/login",
        json={"login": f"nobody_{uuid.uuid4().hex[:10]}", "password": "wrong password"},
        headers=headers,
    )
    assert r.status_code in (401, 429), r.text
    return r.status_code


async def test_a_forged_x_forwarded_for_gets_no_fresh_login_bucket(platform: Platform) -> None:
    # From 127.0.0.1, an address the services trust as a proxy: had the gateway appended to the
    # client's header, uvicorn would have skipped the trusted hop and believed the forgery.
    async with client_at(platform, "127.0.0.1") as attacker:
        codes = [
            await failed_login(attacker, forged_for=f"10.9.{n // 250}.{n % 250 + 1}")
            for n in range(LOGIN_IP_LIMIT + 1)
        ]
    assert codes[:LOGIN_IP_LIMIT] == [401] * LOGIN_IP_LIMIT
    # Each attempt claimed another address, yet all counted against the attacker's own.
    assert codes[LOGIN_IP_LIMIT] == 429

    # Another client is keyed on its own address, not on the gateway's: not locked out.
    async with client_at(platform, "127.0.0.3") as bystander:
        assert await failed_login(bystander) == 401


async def test_internal_apis_need_the_service_token(platform: Platform) -> None:
    token = platform.env_for("post")["POST_INTERNAL_TOKEN"]
    async with httpx.AsyncClient(timeout=10.0) as client:
        for service, method, path, body in [
            ("post", "POST", "/internal/v1/posts/batch", {"ids": []}),
            ("network", "GET", "/internal/v1/users/nobody/followees", None),
        ]:
            url = platform.service_url(service) + path
            missing = await client.request(method, url, json=body)
            assert missing.status_code == 401, missing.text
            assert missing.headers["content-type"] == "application/problem+json"
            wrong = await client.request(
                method, url, json=body, headers={INTERNAL_TOKEN_HEADER: "x" * 43}
            )
            assert wrong.status_code == 403, wrong.text
            right = await client.request(
                method, url, json=body, headers={INTERNAL_TOKEN_HEADER: token}
            )
            assert right.status_code in (200, 404), right.text  # 404: unknown user
        # Not routed by the gateway at all.
        routed = await client.post(f"{platform.gateway_url}/internal/v1/posts/batch", json={})
        assert routed.status_code == 404


async def test_security_headers_through_the_gateway(platform: Platform, inbox: Mailpit) -> None:
    async with client_at(platform, "127.0.0.4") as gateway:  # 127.0.0.1's logins are used up
        await _security_headers(gateway, platform, inbox)


async def _security_headers(gateway: httpx.AsyncClient, platform: Platform, inbox: Mailpit) -> None:
    name = f"hdr_{uuid.uuid4().hex[:8]}"
    user = await register_and_verify(gateway, read_mail_from(inbox), platform.gateway_url, name)
    me = await gateway.get("/api/v1/me", headers=bearer(user["token"]))
    assert me.status_code == 200
    login = await gateway.post(
        "/api/v1/auth/login", json={"login": name, "password": "correct horse battery staple"}
    )
    page = await gateway.get("/api/v1/auth/password-reset/confirm")
    verify = await gateway.get("/api/v1/auth/verify-email", params={"token": "nope"})
    for response in (me, login, page, verify):
        assert response.headers.get_list("x-content-type-options") == ["nosniff"]
        assert response.headers.get_list("x-frame-options") == ["DENY"]
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert me.headers["cache-control"] == "no-store"
    assert login.headers["cache-control"] == "no-store"
    assert page.headers["content-type"].startswith("text/html")
