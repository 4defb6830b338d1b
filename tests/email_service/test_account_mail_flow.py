"""End to end: auth's outbox relay -> RabbitMQ -> email consumer -> Mailpit -> link -> auth."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager

from auth_service.app import create_app as create_auth_app
from email_service.settings import EmailSettings
from tests.auth_service.conftest import (  # the fixtures are used by name below
    PASSWORD,
    auth_database,  # noqa: F401
    auth_settings,  # noqa: F401
    bearer,
    login,
    random_ip,
    register,
    signing_factory,  # noqa: F401
    unique,
)
from tests.email_service.conftest import (
    PUBLIC_BASE_URL,
    STARTUP_TIMEOUT_S,
    LogCapture,
    captured_logs,
    running_email,
)
from tests.support.mailpit import Mail, Mailpit

MakeVhost = Callable[[str], Awaitable[str]]
LINK = re.compile(re.escape(PUBLIC_BASE_URL) + r"(/api/v1/auth/[a-z/-]+\?token=[A-Za-z0-9_\-%]+)")


@asynccontextmanager
async def murmur_mail(
    amqp: str, make_auth: Callable[..., Any], email_settings: Callable[..., EmailSettings]
) -> AsyncIterator[httpx.AsyncClient]:
    """auth (with its relay) and email (with its consumer) on one fresh vhost."""
    async with running_email(email_settings(amqp_url=amqp)):
        app = create_auth_app(make_auth(amqp_url=amqp, run_workers=True, relay_poll_interval_s=0.2))
        async with LifespanManager(app, startup_timeout=STARTUP_TIMEOUT_S):
            transport = httpx.ASGITransport(app=app, client=(random_ip(), 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as c:
                yield c


def link_in(mail: Mail) -> str:
    match = LINK.search(mail.text)
    assert match, "no link to the gateway in the mail"
    return match.group(1)


MailFlow = tuple[httpx.AsyncClient, LogCapture]


@pytest.fixture
async def mail_flow(
    make_vhost: MakeVhost,
    auth_settings: Callable[..., Any],  # noqa: F811
    email_settings: Callable[..., EmailSettings],
) -> AsyncIterator[MailFlow]:
    """A client of auth and email on a fresh vhost, and what the services log meanwhile."""
    amqp = await make_vhost("flow")
    async with murmur_mail(amqp, auth_settings, email_settings) as client:
        # Installed after the apps are built (building one reconfigures the root logger).
        with captured_logs() as logs:
            yield client, logs


async def test_register_then_verify_through_the_mailed_link(
    mail_flow: MailFlow, inbox: Mailpit
) -> None:
    client, logs = mail_flow
    user = await register(client, display_name="Flow Tester")
    [mail] = await inbox.wait_for(user["email"], subject="Verify your email address")
    await inbox.wait_for(user["email"], subject="Welcome to Murmur")
    path = link_in(mail)
    token = parse_qs(urlsplit(path).query)["token"][0]
    page = await client.get(path)
    assert page.status_code == 200, page.text
    tokens = await login(client, user["username"])
    me = (await client.get("/api/v1/me", headers=bearer(tokens))).json()
    assert me["email_verified"] is True
    assert logs.seen("email_sent")  # the capture did see the services' logs...
    assert not logs.seen(token), [
        line[:300] for line in logs.lines if token in line
    ]  # ...and never the token


async def test_password_reset_through_the_mailed_link(mail_flow: MailFlow, inbox: Mailpit) -> None:
    client, logs = mail_flow
    user = await register(client, username=unique("r"))
    old = await login(client, user["username"])
    response = await client.post("/api/v1/auth/password-reset", json={"email": user["email"]})
    assert response.status_code == 202
    [mail] = await inbox.wait_for(user["email"], subject="Reset your password")
    path = link_in(mail)
    token = parse_qs(urlsplit(path).query)["token"][0]
    assert (await client.get(path)).status_code == 200  # the form page
    done = await client.post(
        urlsplit(path).path, json={"token": token, "new_password": "brand new secret"}
    )
    assert done.status_code == 204
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
    )
    assert refresh.status_code == 401
    await login(client, user["username"], "brand new secret")
    bad = await client.post(
        "/api/v1/auth/login", json={"login": user["username"], "password": PASSWORD}
    )
    assert bad.status_code == 401
    assert logs.seen("email_sent")
    assert not logs.seen(token)
