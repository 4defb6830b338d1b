"""``create_app``: lifespan and workers, token checks, ``/healthz``, ``/readyz`` against a real
Redis, ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as redis
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError

from common.app import Role, Wiring, create_app
from common.failures import dependency_errors
from common.health import http_check, redis_check
from common.security import JWKSClient, StaticKeySource, TokenVerifier
from common.settings import ServiceSettings
from tests.support.polling import until
from tests.support.server import free_port


def build(redis_url: str, *, events: list[str] | None = None, timeout_s: float = 2.0) -> FastAPI:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @asynccontextmanager
    async def lifespan(settings: ServiceSettings, role: Role) -> AsyncIterator[Wiring]:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
        if events is not None:
            events.append("started")
        try:
            yield Wiring(state={"redis": client}, readiness={"redis": redis_check(client)})
        finally:
            await client.aclose()
            if events is not None:
                events.append("stopped")

    return create_app(
        name="app-test",
        settings=ServiceSettings(environment="test", readiness_timeout_s=timeout_s),
        routers=[router],
        lifespan=lifespan,
    )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_lifespan_runs_the_service_lifespan(redis_url: str) -> None:
    events: list[str] = []
    app = build(redis_url, events=events)
    async with running(app) as client:
        assert events == ["started"]
        assert isinstance(app.state.redis, redis.Redis)
        assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert events == ["started", "stopped"]


async def test_readyz_ok_when_redis_is_up(redis_url: str) -> None:
    async with running(build(redis_url)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"redis": "ok"}}


async def test_readyz_503_names_the_dependency_that_is_down(redis_url: str) -> None:
    nothing_listening = f"redis://127.0.0.1:{free_port()}/0"
    app = build(nothing_listening)
    async with running(app) as client:
        # A second, healthy dependency must be reported as such next to the failed one.
        healthy = redis.Redis.from_url(redis_url)
        app.state.readiness["cache"] = redis_check(healthy)
        try:
            response = await client.get("/readyz")
        finally:
            await healthy.aclose()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["checks"] == {"redis": "down", "cache": "ok"}
    assert "redis" in body["detail"]
    assert "cache" not in body["detail"]


async def test_readyz_times_out_a_hanging_check(redis_url: str) -> None:
    app = build(redis_url, timeout_s=0.2)
    hang = asyncio.Event()

    async def never_ready() -> None:
        await hang.wait()

    async with running(app) as client:
        app.state.readiness["slow"] = never_ready
        response = await asyncio.wait_for(client.get("/readyz"), 5)
    assert response.status_code == 503
    assert response.json()["checks"] == {"redis": "ok", "slow": "timeout"}


async def test_http_check_against_closed_port(redis_url: str) -> None:
    app = build(redis_url)
    async with running(app) as client, httpx.AsyncClient(timeout=1) as http:
        app.state.readiness["post_service"] = http_check(
            http, f"http://127.0.0.1:{free_port()}/healthz"
        )
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["post_service"] == "down"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_metrics_count_requests_by_route_template(redis_url: str) -> None:
    async with running(build(redis_url)) as client:
        for item_id in (1, 2, 3):
            assert (await client.get(f"/items/{item_id}")).status_code == 200
        assert (await client.get("/items/nope")).status_code == 422
        assert (await client.get("/does/not/exist")).status_code == 404
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counts = samples(response.text, "http_requests_total")
    ok = (("method", "GET"), ("route", "/items/{item_id}"), ("status", "200"))
    assert counts[ok] == 3
    assert counts[(("method", "GET"), ("route", "/items/{item_id}"), ("status", "422"))] == 1
    assert counts[(("method", "GET"), ("route", "<unmatched>"), ("status", "404"))] == 1
    assert not any("/items/1" in dict(labels)["route"] for labels in counts)
    latency = samples(response.text, "http_request_duration_seconds_count")
    assert latency[ok] == 3


async def test_each_app_has_its_own_metrics(redis_url: str) -> None:
    first, second = build(redis_url), build(redis_url)
    async with running(first) as one, running(second) as two:
        await one.get("/items/1")
        await one.get("/items/2")
        await two.get("/items/1")
        first_counts = samples((await one.get("/metrics")).text, "http_requests_total")
        second_counts = samples((await two.get("/metrics")).text, "http_requests_total")
    key = (("method", "GET"), ("route", "/items/{item_id}"), ("status", "200"))
    assert first_counts[key] == 2
    assert second_counts[key] == 1


def test_ops_endpoints_are_not_in_the_public_openapi(redis_url: str) -> None:
    paths = build(redis_url).openapi()["paths"]
    assert "/items/{item_id}" in paths
    assert not {"/healthz", "/readyz", "/metrics"} & set(paths)


async def test_health_checks_raise_when_nothing_listens() -> None:
    import neo4j
    from sqlalchemy.ext.asyncio import create_async_engine

    from common.health import amqp_check, neo4j_check, postgres_check

    port = free_port()
    engine = create_async_engine(
        f"postgresql+asyncpg://murmur@127.0.0.1:{port}/murmur", connect_args={"timeout": 2}
    )
    driver = neo4j.AsyncGraphDatabase.driver(f"bolt://127.0.0.1:{port}", connection_timeout=2)
    checks = {
        "postgres": postgres_check(engine),
        "amqp": amqp_check(f"amqp://guest:guest@127.0.0.1:{port}/", timeout_s=2),
        "neo4j": neo4j_check(driver),
    }
    try:
        for name, check in checks.items():
            with pytest.raises(Exception) as info:
                await asyncio.wait_for(check(), 10)
            assert isinstance(info.value, dependency_errors()), (name, info.value)
    finally:
        await engine.dispose()
        await driver.close()


def test_production_settings_refuse_development_credentials() -> None:
    with pytest.raises(ValidationError, match="guest"):
        ServiceSettings(environment="production")
    amqp = SecretStr("amqps://murmur:s3cr3t-long@mq:5671/")
    with pytest.raises(ValidationError, match="internal_token"):
        ServiceSettings(environment="production", amqp_url=amqp)
    with pytest.raises(ValidationError, match="internal_token"):
        ServiceSettings(environment="production", amqp_url=amqp, internal_token=SecretStr("short"))
    safe = ServiceSettings(
        environment="production", amqp_url=amqp, internal_token=SecretStr("t0ken" * 8)
    )
    assert "s3cr3t" not in repr(safe) and "t0ken" not in repr(safe)
    with pytest.raises(ValidationError):
        ServiceSettings(log_level="LOUD")
    assert ServiceSettings(log_level="debug").log_level == "DEBUG"


def _headers_app(settings: ServiceSettings | None = None) -> FastAPI:
    router = APIRouter()

    @router.get("/page", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse("<p>hi</p>", headers={"Content-Security-Policy": "default-src 'self'"})

    @router.get("/public")
    async def public() -> JSONResponse:
        return JSONResponse({}, headers={"Cache-Control": "public, max-age=300"})

    @router.get("/mine")
    async def mine() -> dict[str, str]:
        return {"email": "a@example.com"}

    @router.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    return create_app(
        name="headers-test",
        settings=settings or ServiceSettings(environment="test"),
        routers=[router],
    )


@pytest.mark.parametrize("path", ["/mine", "/page", "/public", "/crash", "/nowhere", "/healthz"])
async def test_security_headers_on_every_answer(path: str) -> None:
    async with running(_headers_app()) as client:
        response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    expected_cache = "public, max-age=300" if path == "/public" else "no-store"
    assert response.headers["cache-control"] == expected_cache


async def test_a_page_keeps_its_own_csp_and_gains_frame_ancestors() -> None:
    async with running(_headers_app()) as client:
        response = await client.get("/page")
    assert response.headers["content-security-policy"] == (
        "default-src 'self'; frame-ancestors 'none'"
    )


async def test_api_docs_are_off_in_production_unless_asked_for() -> None:
    prod = {
        "environment": "production",
        "amqp_url": SecretStr("amqp://svc:s3cret@mq:5672/"),
        "internal_token": SecretStr("t0ken" * 8),
    }
    for settings, expected in (
        (ServiceSettings(environment="test"), 200),
        (ServiceSettings(**prod), 404),
        (ServiceSettings(**prod, api_docs=True), 200),
    ):
        async with running(_headers_app(settings)) as client:
            for path in ("/docs", "/openapi.json"):
                assert (await client.get(path)).status_code == expected, (settings, path)


class _Recorder:
    """A worker that records when it starts and stops."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    async def start(self) -> None:
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")


def _wired_app(
    events: list[str], *, run_workers: bool = True, verify_tokens: bool = True
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(settings: ServiceSettings, role: Role) -> AsyncIterator[Wiring]:
        events.append(f"lifespan http={role.http} workers={role.workers}")

        async def deleted_since(since: object) -> list[tuple[str, datetime]]:
            return [("gone-user", datetime.now(UTC))]

        yield Wiring(
            state={"thing": "value"},
            workers={"a": _Recorder("a", events), "b": _Recorder("b", events)},
            deleted_since=deleted_since,
        )
        events.append("lifespan closed")

    return create_app(
        name="wired-test",
        settings=ServiceSettings(
            environment="test", run_workers=run_workers, jwks_url="http://127.0.0.1:9/jwks"
        ),
        routers=[],
        lifespan=lifespan,
        verify_tokens=verify_tokens,
    )


async def test_the_workers_run_between_the_lifespans_start_and_its_close() -> None:
    events: list[str] = []
    app = _wired_app(events)
    async with running(app):
        assert app.state.thing == "value"
        assert set(app.state.workers) == {"a", "b"}
        assert events == ["lifespan http=True workers=True", "start a", "start b"]
    assert events[3:] == ["stop b", "stop a", "lifespan closed"]


async def test_no_workers_when_run_workers_is_off() -> None:
    events: list[str] = []
    async with running(_wired_app(events, run_workers=False)):
        pass
    assert events == ["lifespan http=True workers=False", "lifespan closed"]


async def test_create_app_sets_up_token_verification_and_the_deny_list() -> None:
    async with running(app := _wired_app([])):
        verifier = app.state.token_verifier
        assert isinstance(verifier, TokenVerifier)
        assert isinstance(verifier.keys, JWKSClient)
        assert verifier.keys.url == "http://127.0.0.1:9/jwks"
        await until(lambda: app.state.deleted_users.loaded, "the deny-list's first load")
        assert "gone-user" in app.state.deleted_users


async def test_a_verifier_set_before_start_up_is_kept_and_none_is_built_when_off() -> None:
    app = _wired_app([])
    mine = TokenVerifier(StaticKeySource({"keys": []}), issuer="i", audience="a")
    app.state.token_verifier = mine
    async with running(app):
        assert app.state.token_verifier is mine
    off = _wired_app([], verify_tokens=False)
    async with running(off):
        assert getattr(off.state, "token_verifier", None) is None
        assert getattr(off.state, "deleted_users", None) is None
