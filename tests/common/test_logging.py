"""Logging configuration: third-party loggers never print what they see at DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator

import aio_pika
import pytest

from common.events import UserVerificationRequested, make_envelope
from common.logging import THIRD_PARTY_LOG_FLOORS, configure_logging, get_logger
from common.messaging.publisher import Publisher
from common.messaging.topology import declare_topology
from tests.support.sealing import sealed

SECRET = "tok-3f9a1c-never-in-logs"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOG_FLOORS}
    yield
    root.handlers, root.level = handlers, level
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.usefixtures("restore_logging")
async def test_amqp_frames_with_tokens_are_not_logged_at_debug(
    make_vhost: Callable[[str], Awaitable[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    url = await make_vhost("logging")
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, "email", ["user.verification_requested"])
        # Configured inside the test so the handler writes to capsys' stdout.
        configure_logging("logging-test", "DEBUG")
        publisher = Publisher(url, producer="auth")
        try:
            await publisher.publish(
                make_envelope(
                    UserVerificationRequested(
                        user_id="u1", username="ann", sealed=sealed("ann@example.com", SECRET)
                    ),
                    producer="auth",
                )
            )
        finally:
            await publisher.close()
        get_logger("murmur.test").debug("own_debug_line")
    finally:
        await connection.close()

    out = capsys.readouterr().out
    assert SECRET not in out
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # The service's own DEBUG lines still come out: only the third-party ones are held back.
    assert any(e.get("event") == "own_debug_line" for e in events)
    assert not any(
        e.get("level") == "debug" and str(e.get("logger", "")).startswith(("aiormq", "aio_pika"))
        for e in events
    )


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING", "ERROR"])
def test_third_party_loggers_are_capped_whatever_the_service_level(level: str) -> None:
    configure_logging("logging-test", level)
    service_level = logging.getLevelName(level)
    for name in ("aiormq", "aio_pika", "aiosmtplib", "asyncpg", "neo4j"):
        effective = logging.getLogger(f"{name}.child").getEffectiveLevel()
        assert effective == max(logging.INFO, service_level), name
    for name in ("httpx", "httpcore"):
        effective = logging.getLogger(name).getEffectiveLevel()
        assert effective == max(logging.WARNING, service_level), name
