"""common.tracing: off without an endpoint (nothing created), on with one (spans reach a real
Jaeger, across a real RabbitMQ message), and the trace-context and log helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from common.logging import add_trace_ids
from common.tracing import (
    extract_context,
    inject_headers,
    remote_parent,
    trace_headers,
    tracing_enabled,
)
from deploy.local.jaeger import JaegerServer

REPO = Path(__file__).resolve().parents[2]
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, **extra}


def _run(script: str, env: dict[str, str], timeout: float = 120) -> dict[str, Any]:
    """Tracing is process-wide (one global provider): each case runs in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    last = result.stdout.strip().splitlines()[-1]
    out: dict[str, Any] = json.loads(last)
    out["_stdout"] = result.stdout
    return out


# What a process has after configure_tracing, once per environment in CASES (tracing off
# changes no process state, so one interpreter can try several; a case that turned it on
# would show in every later one).
_PROBE = """
import json, os, sys
import aio_pika, httpx
from fastapi import FastAPI
from opentelemetry import trace
from common.tracing import configure_tracing

results = []
for case in CASES:
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]
    os.environ.update(case)
    app = FastAPI()
    results.append({
        "on": configure_tracing("probe", app),
        "provider": type(trace.get_tracer_provider()).__name__,
        "sdk_loaded": any(m.startswith("opentelemetry.sdk") for m in sys.modules),
        "exporter_loaded": any(m.startswith("opentelemetry.exporter") for m in sys.modules),
        "aio_pika_patched": hasattr(aio_pika.Exchange.publish, "__wrapped__"),
        "httpx_patched": hasattr(httpx.AsyncHTTPTransport.handle_async_request, "__wrapped__"),
        "app_instrumented": getattr(app, "_is_instrumented_by_opentelemetry", False),
    })
print(json.dumps({"results": results}))
"""

_OFF_CASES: dict[str, dict[str, str]] = {
    "nothing-set": {},
    "no-endpoint": {"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"},
    "sdk-disabled": {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_SDK_DISABLED": "true",
    },
    "exporter-none": {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_TRACES_EXPORTER": "none",
    },
    "blank-endpoint": {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "},
}
_OFF = {
    "on": False,
    "provider": "ProxyTracerProvider",  # the API's no-op default
    "sdk_loaded": False,
    "exporter_loaded": False,
    "aio_pika_patched": False,
    "httpx_patched": False,
    "app_instrumented": False,
}


def _probe(cases: list[dict[str, str]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = _run(
        _PROBE.replace("CASES", repr(cases)), _clean_env(), timeout=240
    )["results"]
    return results


@pytest.mark.timeout(300)
def test_tracing_off_creates_no_provider_no_exporter_no_instrumentation() -> None:
    results = _probe(list(_OFF_CASES.values()))
    assert dict(zip(_OFF_CASES, results, strict=True)) == dict.fromkeys(_OFF_CASES, _OFF)


@pytest.mark.timeout(300)
def test_the_probe_sees_tracing_when_it_is_on() -> None:
    # The same probe, last with an endpoint: proves the checks above can tell on from off.
    # Port 9 (discard) answers nothing; no span is made, so nothing is sent.
    off, on = _probe([{}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}])
    assert off == _OFF
    assert on == {
        "on": True,
        "provider": "TracerProvider",
        "sdk_loaded": True,
        "exporter_loaded": True,
        "aio_pika_patched": True,
        "httpx_patched": True,
        "app_instrumented": True,
    }


def test_only_otlp_over_http_is_accepted() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from common.tracing import configure_tracing as c; c('x')"],
        cwd=REPO,
        env=_clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "only http/protobuf is supported" in result.stderr


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_enabled_reads_the_standard_variables(env: dict[str, str], enabled: bool) -> None:
    assert tracing_enabled(env) is enabled


@pytest.fixture
def current_span() -> Iterator[SpanContext]:
    """A span context made current with the API alone (no SDK, as with tracing off)."""
    context = SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        yield context


def test_inject_writes_w3c_traceparent_into_headers(current_span: SpanContext) -> None:
    headers: dict[str, Any] = {"x-correlation-id": "c1"}
    assert inject_headers(headers) is headers
    assert headers == {"x-correlation-id": "c1", "traceparent": TRACEPARENT}
    assert trace_headers() == {"traceparent": TRACEPARENT}


def test_nothing_is_injected_outside_a_span() -> None:
    assert trace_headers() == {}
    headers: dict[str, Any] = {}
    inject_headers(headers)
    assert headers == {}


@pytest.mark.parametrize("value", [TRACEPARENT, TRACEPARENT.encode()], ids=["str", "bytes"])
def test_extract_reads_str_or_bytes_amqp_header_values(value: str | bytes) -> None:
    context = trace.get_current_span(extract_context({"traceparent": value})).get_span_context()
    assert context.is_valid and context.is_remote
    assert (context.trace_id, context.span_id) == (TRACE_ID, SPAN_ID)
    assert context.trace_flags.sampled


@pytest.mark.parametrize("headers", [None, {}, {"traceparent": "garbage"}])
def test_extract_without_a_context_gives_none(headers: dict[str, Any] | None) -> None:
    assert not trace.get_current_span(extract_context(headers)).get_span_context().is_valid


def test_remote_parent_is_current_inside_only() -> None:
    with remote_parent({"traceparent": TRACEPARENT}):
        inside = trace.get_current_span().get_span_context()
        assert inside.trace_id == TRACE_ID
        assert add_trace_ids(None, "info", {"event": "e"}) == {
            "event": "e",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
        }
    assert not trace.get_current_span().get_span_context().is_valid


def test_log_lines_outside_a_span_get_no_trace_fields() -> None:
    assert add_trace_ids(None, "info", {"event": "e"}) == {"event": "e"}


# A request writes an outbox row (its trace context kept with it), a relay publishes the row
# later in a context of its own, a consumer handles the message: one trace across a real
# RabbitMQ, exported to a real Jaeger. Each log line carries the trace id.
_ACROSS_THE_BROKER = """
import asyncio, json
import aio_pika
from opentelemetry import trace
from common.logging import configure_logging, get_logger
from common.tracing import configure_tracing, remote_parent, shutdown_tracing, trace_headers

configure_logging("tracing-test")
assert configure_tracing("tracing-test")
log = get_logger("t")
tracer = trace.get_tracer("tests")

async def main(url):
    with tracer.start_as_current_span("request") as span:
        log.info("request_handled")
        row_headers = trace_headers()
        request_trace = format(span.get_span_context().trace_id, "032x")
    connection = await aio_pika.connect_robust(url)
    seen = asyncio.get_running_loop().create_future()
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("tracing-test", durable=True)

        async def on_message(message):
            async with message.process():
                log.info("event_consumed")
                context = trace.get_current_span().get_span_context()
                seen.set_result(format(context.trace_id, "032x"))

        await queue.consume(on_message)
        with remote_parent(row_headers), tracer.start_as_current_span("relay-publish"):
            await channel.default_exchange.publish(
                aio_pika.Message(b"{}", headers={"x-correlation-id": "c1"}), routing_key=queue.name
            )
        consumer_trace = await asyncio.wait_for(seen, 30)
    shutdown_tracing()
    print(json.dumps({"request": request_trace, "consumer": consumer_trace}))

asyncio.run(main(URL))
"""


def _trace_from_jaeger(api_url: str, trace_id: str, want: int) -> dict[str, Any]:
    with httpx.Client(base_url=api_url, timeout=5) as client:
        for _ in range(150):
            response = client.get(f"/api/traces/{trace_id}")
            if response.status_code == 200 and len(response.json()["data"][0]["spans"]) >= want:
                data: dict[str, Any] = response.json()["data"][0]
                return data
            time.sleep(0.2)
    raise AssertionError(f"trace {trace_id} with {want} spans never reached Jaeger")


@pytest.mark.timeout(600)
async def test_one_trace_from_request_through_the_broker_to_the_consumer_in_jaeger(
    jaeger: JaegerServer, make_vhost: Callable[[str], Awaitable[str]]
) -> None:
    url = await make_vhost("tracing")
    out = _run(
        _ACROSS_THE_BROKER.replace("URL", repr(url)),
        _clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_http_url,
            OTEL_SERVICE_NAME="tracing-test",
        ),
    )
    assert out["consumer"] == out["request"]
    data = _trace_from_jaeger(jaeger.api_url, out["request"], want=4)
    spans = {span["operationName"]: span for span in data["spans"]}
    # Ours, then aio-pika's producer and consumer spans (named by the instrumentation).
    assert {"request", "relay-publish"} <= set(spans)
    kinds = {
        tag["value"] for span in data["spans"] for tag in span["tags"] if tag["key"] == "span.kind"
    }
    assert {"producer", "consumer"} <= kinds
    assert {p["serviceName"] for p in data["processes"].values()} == {"tracing-test"}
    # The relay's span is a child of the request's, though started after it had ended.
    relay = spans["relay-publish"]
    assert relay["references"][0]["spanID"] == spans["request"]["spanID"]
    lines = [json.loads(line) for line in out["_stdout"].splitlines() if line.startswith("{")]
    logged = {line["event"]: line for line in lines if "event" in line}
    assert logged["request_handled"]["trace_id"] == out["request"]
    assert logged["event_consumed"]["trace_id"] == out["request"]
