"""``create_app``: every service's FastAPI app with logging, errors, health, metrics, token
checks and background workers wired in.

A service gives ``create_app`` a lifespan of the ``ServiceLifespan`` shape: given its settings
and the process's ``Role`` it builds its clients and yields one ``Wiring`` (what goes on
``app.state``, its readiness checks, its named background workers, where deleted accounts are
kept). The same lifespan runs under ``serve`` (here) and ``worker`` (``common.cli``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.asgi import HttpMiddleware, ResponseTracker
from common.errors import (
    BodySizeLimitMiddleware,
    UnhandledErrorMiddleware,
    install_problem_handlers,
    problem_response,
)
from common.health import ReadinessCheck
from common.logging import CorrelationIdMiddleware, configure_logging, get_logger
from common.metrics_exporters import ScrapedMetrics, ready_gauge, refresh_scraped
from common.security import (
    DeletedUsers,
    DeletedUsersLoader,
    JWKSClient,
    KeySource,
    TokenVerifier,
    deny_list_running,
)
from common.settings import ServiceSettings
from common.tracing import configure_tracing, shutdown_tracing
from common.workers import Worker, running

__all__ = [
    "SERVE",
    "WORKER",
    "ReadinessCheck",
    "Role",
    "ServiceLifespan",
    "Wiring",
    "create_app",
]


@dataclass(frozen=True)
class Role:
    """What one process of a service does: answer HTTP, run the background workers, or both."""

    http: bool
    workers: bool


SERVE = Role(http=True, workers=True)
WORKER = Role(http=False, workers=True)


@dataclass
class Wiring:
    """What a service's lifespan hands back, the same shape for every service.

    ``state`` goes onto ``app.state`` (what the routes' dependencies read); ``readiness``
    joins ``/readyz``; ``workers`` are started after the lifespan is entered and stopped
    before it exits, so they may use its clients; ``deleted_since`` loads deleted accounts
    for the token deny-list (HTTP only); ``metrics`` are read at each ``/metrics`` scrape
    (``common.metrics_exporters``).
    """

    state: dict[str, Any] = field(default_factory=dict)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    deleted_since: DeletedUsersLoader | None = None
    metrics: list[ScrapedMetrics] = field(default_factory=list)


S = TypeVar("S", bound=ServiceSettings)
# (settings, role) -> the service's clients for as long as the context is open.
ServiceLifespan = Callable[[S, Role], AbstractAsyncContextManager[Wiring]]
# The keys the token verifier checks signatures with; default: auth_service's JWK set.
TokenKeys = Callable[[FastAPI], KeySource]

_UNMATCHED_ROUTE = "<unmatched>"
# Probes and scrapes arrive every few seconds: counted in metrics, kept out of the access log.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

log = get_logger(__name__)


class _HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )


class _TelemetryMiddleware(HttpMiddleware):
    """Pure ASGI: one access-log line and the request metrics per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: _HttpMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        tracker = ResponseTracker(send)
        status = 500
        try:
            await self.app(scope, receive, tracker.send)
            status = tracker.status or 500
        finally:
            elapsed = time.perf_counter() - start
            # The route template, never the raw path: ids would explode label cardinality.
            route = getattr(scope.get("route"), "path", None) or _UNMATCHED_ROUTE
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route, str(status)).observe(elapsed)
            if scope["path"] not in _QUIET_PATHS:
                # The path only: query strings may carry tokens (e.g. ?token= on verify links).
                log.info(
                    "http_request",
                    method=method,
                    route=route,
                    path=scope["path"],
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )


# OWASP's REST Security Cheat Sheet set for API answers. Framing protection costs nothing on
# JSON and protects the HTML pages (verify-email, password reset) from clickjacking.
_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
)
_FRAME_ANCESTORS = b"frame-ancestors 'none'"


class _SecurityHeadersMiddleware(HttpMiddleware):
    """Pure ASGI: security headers on every answer, errors included.

    ``Cache-Control: no-store`` is the default for answers that set no policy of their own:
    nearly every answer is personal or carries a token (``/me``, login, refresh), and the
    few public, cacheable ones (the JWK set) say so explicitly.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                csp = [
                    i
                    for i, (name, _) in enumerate(headers)
                    if name.lower() == b"content-security-policy"
                ]
                if not csp:
                    headers.append((b"content-security-policy", _FRAME_ANCESTORS))
                elif b"frame-ancestors" not in headers[csp[0]][1]:
                    name, value = headers[csp[0]]
                    headers[csp[0]] = (name, value + b"; " + _FRAME_ANCESTORS)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _run_check(name: str, check: ReadinessCheck, timeout_s: float) -> str:
    try:
        await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        log.warning("readiness_check_failed", dependency=name, error="timeout")
        return "timeout"
    except Exception as exc:
        log.warning("readiness_check_failed", dependency=name, error=type(exc).__name__)
        return "down"
    return "ok"


def _ops_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, ReadinessCheck] = request.app.state.readiness
        timeout_s: float = request.app.state.settings.readiness_timeout_s
        names = list(checks)
        results = await asyncio.gather(*(_run_check(n, checks[n], timeout_s) for n in names))
        status = dict(zip(names, results, strict=True))
        failed = [name for name, result in status.items() if result != "ok"]
        request.app.state.ready_gauge.set(0 if failed else 1)
        if failed:
            return problem_response(
                503,
                "Service Unavailable",
                "Not ready: " + ", ".join(failed),
                headers={"Retry-After": "5"},
                checks=status,
            )
        return JSONResponse({"status": "ok", "checks": status})

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        registry: CollectorRegistry = request.app.state.metrics_registry
        await refresh_scraped(request.app.state.scraped_metrics)
        # Collecting is synchronous and quick; the registry is per app.
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


async def _token_verifier(
    app: FastAPI, settings: ServiceSettings, keys: TokenKeys | None, stack: AsyncExitStack
) -> None:
    # A verifier set before start-up (tests: their own signing key) is kept.
    if getattr(app.state, "token_verifier", None) is not None:
        return
    if keys is None:
        jwks = JWKSClient(settings.jwks_url)
        stack.push_async_callback(jwks.aclose)
        source: KeySource = jwks
    else:
        source = keys(app)
    app.state.token_verifier = TokenVerifier(
        source, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )


def create_app(
    *,
    name: str,
    settings: S,
    routers: Sequence[APIRouter],
    lifespan: ServiceLifespan[S] | None = None,
    verify_tokens: bool = True,
    token_keys: TokenKeys | None = None,
    description: str = "",
    version: str = "1.0.0",
) -> FastAPI:
    """A service app: its routers plus logging, problem errors, body limit, health, metrics,
    access-token checks and the service's lifespan.

    ``lifespan`` (see ``Wiring``) runs with ``Role(http=True, workers=settings.run_workers)``;
    its workers run while the app does when ``settings.run_workers``. With ``verify_tokens``
    the app checks access tokens against ``token_keys`` (default: the JWK set at
    ``settings.jwks_url``) and, when the lifespan says where deleted accounts are kept, denies
    their tokens.
    """
    configure_logging(name, settings.log_level)
    role = Role(http=True, workers=settings.run_workers)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("service_starting", version=version, environment=settings.environment)
        async with AsyncExitStack() as stack:
            if verify_tokens:
                await _token_verifier(app, settings, token_keys, stack)
            if lifespan is not None:
                wiring = await stack.enter_async_context(lifespan(settings, role))
                for key, value in wiring.state.items():
                    setattr(app.state, key, value)
                app.state.readiness.update(wiring.readiness)
                app.state.workers = wiring.workers
                for source in wiring.metrics:
                    app.state.metrics_registry.register(source)
                    stack.callback(app.state.metrics_registry.unregister, source)
                    stack.push_async_callback(source.aclose)
                app.state.scraped_metrics = wiring.metrics
                if verify_tokens and wiring.deleted_since is not None:
                    deny_list = DeletedUsers(
                        wiring.deleted_since,
                        keep_s=settings.deny_list_keep_s,
                        refresh_interval_s=settings.deny_list_refresh_s,
                    )
                    await stack.enter_async_context(deny_list_running(app.state, deny_list))
                if role.workers:
                    await stack.enter_async_context(running(wiring.workers))
            log.info("service_started")
            yield
        log.info("service_stopped")
        shutdown_tracing()  # the spans of the shutdown too

    # The interactive docs and the schema list internal endpoints too: only where wanted.
    docs = settings.api_docs_enabled
    app = FastAPI(
        title=name,
        description=description,
        version=version,
        lifespan=app_lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    app.state.settings = settings
    app.state.service_name = name
    app.state.readiness = {}
    app.state.metrics_registry = registry
    app.state.ready_gauge = ready_gauge(registry)
    app.state.scraped_metrics = []

    install_problem_handlers(app)
    app.include_router(_ops_router())
    for router in routers:
        app.include_router(router)

    # Added innermost first: correlation id wraps everything so even 413s, 500s and access-log
    # lines carry it; the telemetry sees the 500 the error middleware answers.
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(_TelemetryMiddleware, metrics=_HttpMetrics(registry))
    app.add_middleware(CorrelationIdMiddleware)
    app.add_middleware(_SecurityHeadersMiddleware)
    # Last: the OpenTelemetry middleware goes outermost, so the server span covers the whole
    # request and every log line in it carries the trace id. Off (no OTEL_* endpoint), this
    # neither imports the SDK nor touches the app.
    configure_tracing(name, app)
    return app
