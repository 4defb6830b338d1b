"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables; off by default.

One call per process turns it on: ``configure_tracing("post_service", app)``. It reads

- ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``: where spans go
  (OTLP over HTTP/protobuf, e.g. ``http://127.0.0.1:4318``, Jaeger's or a collector's port).
  Neither set, ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``: tracing is off,
  and then nothing is created (no provider, no exporter, no instrumentation; the SDK is not
  even imported), so the services pay nothing for it.
- ``OTEL_SERVICE_NAME`` (default: the name passed in), ``OTEL_RESOURCE_ATTRIBUTES``.
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (default ``parentbased_always_on``;
  ``parentbased_traceidratio`` with ``0.01`` keeps 1 % of the traces that start here).
- The SDK's own ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_*_HEADERS/_TIMEOUT/_COMPRESSION``.

The trace context crosses the broker in W3C ``traceparent``/``tracestate`` AMQP headers: the
aio-pika instrumentation injects them on publish and extracts them in ``queue.consume``
callbacks. A relay publishes long after the request that wrote its outbox row, in a context of
its own, so the request's context is captured with :func:`trace_headers` when the row is
written and restored around the publish with :func:`remote_parent`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "EXCLUDED_URLS",
    "TRACE_HEADERS",
    "configure_tracing",
    "extract_context",
    "inject_headers",
    "remote_parent",
    "shutdown_tracing",
    "trace_headers",
    "tracing_enabled",
]

# The W3C Trace Context headers (and baggage) that the default propagators write.
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
# Probes and scrapes arrive every few seconds: a span each would bury the requests.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_SUPPORTED_PROTOCOL = "http/protobuf"

_provider: Any = None  # the SDK's TracerProvider once configured (the SDK is imported lazily)


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINT_VARS)


def configure_tracing(service: str, app: FastAPI | None = None) -> bool:
    """Turn tracing on for this process when ``OTEL_*`` asks for it; True if it is on.

    Safe to call more than once (several apps in one test process): the provider and the
    library instrumentations are set up once, each app passed is instrumented once.
    """
    if not tracing_enabled():
        return False
    global _provider
    if _provider is None:
        _provider = _make_provider(service)
        trace.set_tracer_provider(_provider)
        _instrument_libraries()
    if app is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS
        )
    return True


def shutdown_tracing() -> None:
    """Export what is still buffered (the SDK also does it at interpreter exit)."""
    global _provider
    if _provider is not None:
        _provider.force_flush()


def _make_provider(service: str) -> Any:
    # Imported here so that a process with tracing off never loads the SDK or an exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    for name in _PROTOCOL_VARS:
        protocol = os.environ.get(name, "").strip()
        if protocol and protocol != _SUPPORTED_PROTOCOL:
            raise ValueError(
                f"{name}={protocol!r}: only {_SUPPORTED_PROTOCOL} is supported "
                "(OTLP over HTTP, port 4318)"
            )
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, which wins over
    # the default given here; the sampler comes from OTEL_TRACES_SAMPLER(_ARG).
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # asyncpg rather than SQLAlchemy: every statement SQLAlchemy's async engine runs goes
    # through asyncpg, so one span per statement, not two.
    instrumentors: list[Any] = [
        AioPikaInstrumentor(),
        AsyncPGInstrumentor(),  # type: ignore[no-untyped-call]
        HTTPXClientInstrumentor(),
        RedisInstrumentor(),
    ]
    for instrumentor in instrumentors:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=_provider)


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """AMQP header values may arrive as bytes (pamqp keeps undecodable long strings raw)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("ascii", errors="replace")
        return [str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier.keys())


_getter = _HeaderGetter()


def inject_headers(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Write the current trace context into ``headers`` (AMQP headers, an envelope's field).

    Writes nothing when no span is recording here (tracing off, or not sampled in).
    """
    propagate.inject(headers)
    return headers


def trace_headers() -> dict[str, str]:
    """The current trace context as headers, to keep with work done later (an outbox row)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, Any] | None) -> otel_context.Context:
    """The trace context carried by ``headers`` (an empty one when they carry none)."""
    return propagate.extract(headers or {}, getter=_getter)


@contextlib.contextmanager
def remote_parent(headers: Mapping[str, Any] | None) -> Iterator[None]:
    """Make the context in ``headers`` current: spans started inside continue that trace."""
    token = otel_context.attach(extract_context(headers))
    try:
        yield
    finally:
        otel_context.detach(token)
