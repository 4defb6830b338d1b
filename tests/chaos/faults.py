"""The chaos test's own platform (backing servers, five services, gateway) and its faults.

Each fault breaks one part and brings it back, blocking (run it in a thread); the caller then
waits until every service is ready again. Servers are stopped the way an operator or a crash
would: SIGKILL for a service, a clean stop for RabbitMQ, Redis and Neo4j, a fast shutdown
for PostgreSQL (its default "smart" shutdown waits for the services' pooled connections).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

import redis

from bench.backing import BenchStack
from deploy.local.process import pid_alive, poll
from deploy.platform.runner import SERVICES, Platform

FEED_REDIS_DB = 3  # deploy.platform.runner gives feed_service database 3

# Relaxed for a load from one address (like the benchmark's), and a fan-out small enough that
# any author with more than two followers goes through the feed.fanout queue and its workers.
PLATFORM_ENV = {
    "AUTH_BCRYPT_ROUNDS": "4",
    "AUTH_RATE_LOGIN_ACCOUNT": "100000/minute",
    "AUTH_RATE_LOGIN_IP": "1000000/minute",
    "AUTH_RATE_REGISTER_IP": "1000000/hour",
    "AUTH_ACCESS_TOKEN_TTL_S": "14400",
    "FEED_INLINE_FANOUT_MAX": "2",
    "FEED_FANOUT_BATCH_SIZE": "2",
    **{f"{service.upper()}_LOG_LEVEL": "WARNING" for service in SERVICES},
}


@dataclass(frozen=True)
class Fault:
    """Breaks one part (`down`, blocking), which stays broken `down_s`, then `up` repairs it."""

    name: str
    down: Callable[[], object]
    up: Callable[[], object]
    down_s: float = 0.0


def _nothing() -> None:
    pass


class ChaosStack(BenchStack):
    """A platform of the test's own, so killing its servers disturbs no other test."""

    def start(self) -> Platform:
        self.start_backing()
        return self.start_platform(PLATFORM_ENV)

    @property
    def live_platform(self) -> Platform:
        assert self.platform is not None, "start() first"
        return self.platform

    @property
    def mail_api_url(self) -> str:
        """The development inbox's HTTP API (Mailpit)."""
        return self.mailpit.api_url

    def faults(self, *, down_s: float) -> list[Fault]:
        """One pass of every fault, in an order that lets each finding show at the end: the
        RabbitMQ stop comes after feed_service's kill and the feed flush, which would otherwise
        hide what a broker restart leaves behind."""
        platform = self.live_platform
        kills = [
            Fault(
                f"kill {s}_service",
                lambda s=s: self.kill_service(s),
                lambda s=s: platform.restart_service(s, 300.0),
            )
            for s in SERVICES
        ]
        return [
            *kills,
            Fault("restart redis", self.redis.stop, self.redis.start),
            Fault("flush the feed database", self.flush_feed, _nothing),
            Fault("stop postgresql", self.stop_postgres, self.postgres.start, down_s),
            Fault("stop neo4j", self.neo4j.stop, self.neo4j.start, down_s),
            Fault("stop rabbitmq", self.rabbitmq.stop, self.rabbitmq.start, down_s),
        ]

    def schedule(self, *, down_s: float, overlap: bool) -> list[list[list[Fault]]]:
        """One pass of `faults` as rounds of tracks: a round's tracks run side by side, each
        track's faults one after another. Without `overlap` every fault is a round of its
        own. With it (the short run in `make test`), Neo4j's stop, by far the slowest fault
        (a JVM restart: one to two minutes on a loaded two-core machine), runs alongside the
        five service kills instead of after them."""
        faults = self.faults(down_s=down_s)
        if not overlap:
            return [[[fault]] for fault in faults]
        kills = [f for f in faults if f.name.startswith("kill ")]
        neo4j = [f for f in faults if f.name == "stop neo4j"]
        rest = [f for f in faults if f not in kills and f not in neo4j]
        return [[neo4j, kills], *([[fault]] for fault in rest)]

    def kill_service(self, service: str) -> None:
        pid = self.live_platform.pid_of(service)
        assert pid is not None, f"{service} is not running"
        os.killpg(pid, signal.SIGKILL)
        # The service is our child: reap it, or its zombie would look alive to the runner.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def flush_feed(self) -> None:
        with redis.Redis(host="127.0.0.1", port=self.redis.port, db=FEED_REDIS_DB) as client:
            client.flushdb()

    def stop_postgres(self) -> None:
        pid = self.postgres.pid()
        assert pid is not None, "postgres is not running"
        os.kill(pid, signal.SIGINT)  # fast shutdown: ends the sessions, then stops
        if not poll(lambda: not pid_alive(pid), 30, interval=0.1):
            raise AssertionError("postgres did not stop within 30 s")
        self.postgres.stop()  # reaps it and removes the pidfile
