"""One post, one trace: a platform exporting to a real Jaeger shows ``POST /api/v1/posts``, the
relay's publish, feed_service's consumer and a fan-out batch in the same trace."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import httpx
import pytest

from deploy.local.jaeger import JaegerServer
from deploy.platform.runner import Platform
from tests.e2e.journey import bearer, eventually, feed_ids, read_mail_from, register_and_verify
from tests.support.mailpit import Mailpit


@pytest.fixture(scope="module")
def platform_env(jaeger: JaegerServer) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http_url,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms: spans reach Jaeger soon after they end
        # Every follower through the fan-out queue, so that one follower makes a batch.
        "FEED_INLINE_FANOUT_MAX": "0",
    }


def _spans_by_service(data: dict[str, Any]) -> dict[str, set[str]]:
    services = {pid: p["serviceName"] for pid, p in data["processes"].items()}
    found: dict[str, set[str]] = {}
    for span in data["spans"]:
        found.setdefault(services[span["processID"]], set()).add(span["operationName"])
    return found


def _traceparent() -> tuple[str, str]:
    """A trace started by the client (as a traced caller would): its id is known up front."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


_WANTED = {
    "post_service": {"POST /api/v1/posts", "outbox.publish"},
    "feed_service": {"handle post.created", "fanout.batch"},
}


@pytest.mark.timeout(600)
async def test_one_post_is_one_trace_from_the_request_to_the_fanout_batch(
    platform: Platform, inbox: Mailpit, jaeger: JaegerServer
) -> None:
    # A patient client: the first Neo4j write of a fresh platform can take seconds on a
    # loaded machine, and a timed-out follow would only be retried.
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=60.0) as gateway:
        await _one_traced_post(gateway, platform, inbox, jaeger)


async def _one_traced_post(
    gateway: httpx.AsyncClient, platform: Platform, inbox: Mailpit, jaeger: JaegerServer
) -> None:
    suffix = uuid.uuid4().hex[:8]
    read_mail = read_mail_from(inbox)
    author = await register_and_verify(gateway, read_mail, platform.gateway_url, f"au_{suffix}")
    reader = await register_and_verify(gateway, read_mail, platform.gateway_url, f"rd_{suffix}")

    async def trace_holding(
        trace_id: str, wanted: dict[str, set[str]], what: str
    ) -> dict[str, set[str]]:
        async with httpx.AsyncClient(base_url=jaeger.api_url, timeout=5.0) as client:

            async def whole() -> dict[str, set[str]] | None:
                response = await client.get(f"/api/traces/{trace_id}")
                if response.status_code != 200:
                    return None
                found = _spans_by_service(response.json()["data"][0])
                if all(want <= found.get(service, set()) for service, want in wanted.items()):
                    return found
                return None

            try:
                return await eventually(whole, what, 60.0)
            except AssertionError:
                last = await client.get(f"/api/traces/{trace_id}")
                ok = last.status_code == 200
                seen = _spans_by_service(last.json()["data"][0]) if ok else {}
                raise AssertionError(f"{what}: trace {trace_id} holds only {seen}") from None

    # The follow, traced too: once feed_service has handled its user.followed the follower is
    # in the author's audience there, so the post below is fanned out to them.
    follow_trace, follow_parent = _traceparent()

    async def follow() -> bool:
        r = await gateway.put(
            f"/api/v1/me/following/{author['id']}",
            headers={**bearer(reader["token"]), "traceparent": follow_parent},
        )
        assert r.status_code in (204, 404), r.text
        return r.status_code == 204

    await eventually(follow, "reader follows author", 30.0)
    followed = await trace_holding(
        follow_trace,
        {
            "network_service": {"PUT /api/v1/me/following/{user_id}", "outbox.publish"},
            "feed_service": {"handle user.followed"},
        },
        "the follow's trace",
    )
    # Neo4j has no maintained instrumentation: the transaction-function spans are ours.
    assert any(op.startswith("neo4j.write ") for op in followed["network_service"]), followed

    # The client starts the trace (as a traced caller would): its id is then known up front.
    trace_id, traceparent = _traceparent()
    r = await gateway.post(
        "/api/v1/posts",
        headers={**bearer(author["token"]), "traceparent": traceparent},
        json={"content": f"traced {suffix}"},
    )
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]

    async def in_reader_feed() -> bool:
        return post_id in await feed_ids(gateway, reader["token"])

    await eventually(in_reader_feed, "the post in the follower's feed", 30.0)

    found = await trace_holding(trace_id, _WANTED, "the post's trace")
    # The outbox insert, and aio-pika's spans of both hops, are in the same trace.
    post, feed = found["post_service"], found["feed_service"]
    assert {"INSERT", "murmur.events,post.created send"} <= post, post
    assert "murmur.events receive" in feed, feed
    assert "feed.fanout receive" in feed and ",feed.fanout send" in feed, feed
