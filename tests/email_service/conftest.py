"""email_service under test: the real consumer over RabbitMQ, sending to Mailpit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from common.events import EventEnvelope, EventPayload, make_envelope
from common.messaging.publisher import Publisher
from deploy.local.mailpit import MailpitServer
from email_service.app import create_app
from email_service.service.mailer import Mailer
from email_service.settings import EmailSettings
from tests.support.polling import until

PUBLIC_BASE_URL = "http://gateway.test"
# asgi-lifespan gives start-up 5 s; auth alone took 6 s on a 2-core machine at load 30.
STARTUP_TIMEOUT_S = 60.0


def unique_address() -> str:
    return f"m{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def email_settings(redis_url: str, mailpit: MailpitServer) -> Callable[..., EmailSettings]:
    def make(**overrides: Any) -> EmailSettings:
        values: dict[str, Any] = {
            "environment": "test",
            "redis_url": redis_url,
            "smtp_host": mailpit.smtp_host,
            "smtp_port": mailpit.smtp_port,
            "smtp_timeout_s": 3.0,
            "public_base_url": PUBLIC_BASE_URL,
            "key_prefix": f"test:email:{uuid.uuid4().hex}",
            "retry_delays_ms": [500, 1000, 2000],
        }
        values.update(overrides)
        return EmailSettings(**values)

    return make


@asynccontextmanager
async def running_email(settings: EmailSettings) -> AsyncIterator[FastAPI]:
    """The email app with its consumer connected (queue declared and bound)."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=STARTUP_TIMEOUT_S):
        await until(lambda: app.state.consumer.connection is not None)
        yield app


@asynccontextmanager
async def publisher(amqp_url: str) -> AsyncIterator[Callable[[EventEnvelope], Awaitable[None]]]:
    pub = Publisher(amqp_url, producer="auth")
    await pub.connect()
    try:
        yield pub.publish
    finally:
        await pub.close()


def envelope(payload: EventPayload) -> EventEnvelope:
    return make_envelope(payload, producer="auth")


@asynccontextmanager
async def running_mailer(settings: EmailSettings) -> AsyncIterator[Mailer]:
    """The app's mailer alone (no consumer), for driving the at-most-once rule directly."""
    app = create_app(settings.model_copy(update={"run_workers": False}))
    async with LifespanManager(app, startup_timeout=STARTUP_TIMEOUT_S):
        yield app.state.mailer


class LogCapture(logging.Handler):
    """Every log line (as the services render it) while installed on the root logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def seen(self, text: str) -> bool:
        return any(text in line for line in self.lines)


@contextmanager
def captured_logs(level: int = logging.DEBUG) -> Iterator[LogCapture]:
    root = logging.getLogger()
    capture = LogCapture()
    if root.handlers:
        capture.setFormatter(root.handlers[0].formatter)
    previous = root.level
    root.addHandler(capture)
    root.setLevel(level)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)
