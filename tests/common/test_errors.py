"""Problem-details responses of an app built with ``create_app``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
import sqlalchemy.exc
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict

from common.app import create_app
from common.errors import (
    PROBLEM_CONTENT_TYPE,
    Conflict,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    problem_responses,
)
from common.failures import PermanentError
from common.settings import ServiceSettings
from tests.support.failures import TRANSIENT_DEPENDENCY_ERRORS
from tests.support.server import free_port, serve

TRANSIENT = dict(TRANSIENT_DEPENDENCY_ERRORS)

SECRET_INTERNALS = "db-primary.internal:5432 password=hunter2"


class Signup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    age: int


def build_app(max_body_bytes: int = 1_048_576) -> FastAPI:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @router.post("/signup")
    async def signup(body: Signup) -> dict[str, str]:
        return {"username": body.username}

    @router.post("/upload")
    async def upload(body: dict[str, str]) -> dict[str, int]:
        return {"keys": len(body)}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError(SECRET_INTERNALS)

    @router.get("/redis-down")
    async def redis_down() -> None:
        client = redis.Redis(port=free_port(), socket_connect_timeout=1)
        try:
            await client.ping()
        finally:
            await client.aclose()

    @router.get("/db-down")
    async def db_down() -> None:
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, OSError(SECRET_INTERNALS))

    @router.get("/db-busy-connection")
    async def db_busy_connection() -> None:
        # What SQLAlchemy raises for asyncpg's error on a connection its server left mid-query.
        cause = asyncpg.InternalClientError(
            "cannot switch to state 11; another operation (2) is in progress"
        )
        raise sqlalchemy.exc.InternalError("INSERT INTO authors", {}, cause) from cause

    @router.get("/db-shutting-down")
    async def db_shutting_down() -> None:
        cause = asyncpg.CannotConnectNowError("the database system is shutting down")
        raise sqlalchemy.exc.DBAPIError("SELECT 1", {}, cause) from cause

    @router.get("/db-bug")
    async def db_bug() -> None:
        cause = ValueError(SECRET_INTERNALS)
        raise sqlalchemy.exc.DBAPIError("SELECT 1", {}, cause) from cause

    @router.get("/http-down")
    async def http_down() -> None:
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{free_port()}/")

    @router.get("/dependency/{name}")
    async def dependency_raises(name: str) -> None:
        raise TRANSIENT[name]()

    @router.get("/upstream/{status}")
    async def upstream(status: int) -> None:
        request = httpx.Request("GET", "http://network/internal/users/x/followees")
        httpx.Response(status, request=request).raise_for_status()

    @router.get("/permanent")
    async def permanent() -> None:
        raise PermanentError("bad data") from ConnectionError(SECRET_INTERNALS)

    @router.get("/unavailable")
    async def unavailable() -> None:
        raise ServiceUnavailable("search is warming up", retry_after=7, dependency="search")

    @router.get("/private")
    async def private() -> None:
        raise Unauthorized("Not authenticated")

    @router.get("/conflict")
    async def conflict() -> None:
        raise Conflict("username taken")

    @router.get("/limited")
    async def limited() -> None:
        raise TooManyRequests(retry_after=12)

    return create_app(
        name="errors-test",
        settings=ServiceSettings(environment="test", max_body_bytes=max_body_bytes),
        routers=[router],
    )


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(build_app()) as c:
        yield c


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    return dict(body)


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404)


async def test_wrong_method_is_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/items/1")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_validation_error_lists_errors_without_echoing_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/signup", json={"username": "alice", "age": "hunter2-secret", "is_admin": "x-secret"}
    )
    body = assert_problem(response, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    locs = sorted(tuple(e["loc"]) for e in errors)
    assert locs == [("body", "age"), ("body", "is_admin")]
    assert all(set(e) == {"loc", "msg"} for e in errors)
    assert "secret" not in response.text


async def test_path_validation_error_is_422(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/items/abc"), 422)
    assert body["errors"] == [{"loc": ["path", "item_id"], "msg": body["errors"][0]["msg"]}]  # type: ignore[index]


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/signup", content=b'{"username": ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_body_over_limit_with_content_length_is_413(client: httpx.AsyncClient) -> None:
    payload = json.dumps({"k": "x" * (1_048_576 + 10)}).encode()
    response = await client.post(
        "/upload", content=payload, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


async def test_streamed_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    chunk = b"x" * 65_536

    async def body() -> AsyncIterator[bytes]:
        yield b'{"k": "'
        for _ in range(20):  # 1.25 MiB in total
            yield chunk
        yield b'"}'

    request = client.build_request(
        "POST", "/upload", content=body(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    assert_problem(await client.send(request), 413)


async def test_body_under_limit_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/upload", json={"k": "x" * 1_000_000})
    assert response.status_code == 200
    assert response.json() == {"keys": 1}


async def test_body_limit_over_real_http() -> None:
    """uvicorn delivers chunked bodies in pieces: the limit must still hold end to end."""
    async with (
        serve(build_app(max_body_bytes=1000)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):

        async def body() -> AsyncIterator[bytes]:
            yield b'{"k": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        streamed = await http.post(
            "/upload", content=body(), headers={"content-type": "application/json"}
        )
        assert_problem(streamed, 413)
        declared = await http.post("/upload", json={"k": "y" * 2000})
        assert_problem(declared, 413)
        small = await http.post("/upload", json={"k": "y"})
        assert small.status_code == 200


async def test_unexpected_error_is_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom", headers={"X-Correlation-ID": "corr-500"})
    body = assert_problem(response, 500)
    assert body["title"] == "Internal Server Error"
    assert "hunter2" not in response.text
    assert "internal" not in response.text.lower().replace("internal server error", "")
    assert "Traceback" not in response.text
    assert response.headers["x-correlation-id"] == "corr-500"


async def test_a_wrapper_of_no_dependency_error_is_500(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/db-bug"), 500)


@pytest.mark.parametrize(
    "path",
    ["/redis-down", "/db-down", "/db-busy-connection", "/db-shutting-down", "/http-down"],
)
async def test_dependency_down_is_503_with_retry_after(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert "hunter2" not in response.text
    assert "127.0.0.1" not in response.text


@pytest.mark.parametrize("name", sorted(TRANSIENT))
async def test_each_transient_dependency_error_is_503(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/dependency/{name}")
    body = assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert body["title"] == "Service Unavailable"


@pytest.mark.parametrize(("status", "answer"), [(503, 503), (429, 503), (404, 500)])
async def test_an_upstream_status_error_is_503_only_when_transient(
    client: httpx.AsyncClient, status: int, answer: int
) -> None:
    assert_problem(await client.get(f"/upstream/{status}"), answer)


async def test_a_permanent_error_over_a_dependency_error_is_500(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/permanent")
    assert_problem(response, 500)
    assert "hunter2" not in response.text


async def test_service_unavailable_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/unavailable")
    body = assert_problem(response, 503)
    assert response.headers["retry-after"] == "7"
    assert body["detail"] == "search is warming up"
    assert body["dependency"] == "search"


async def test_unauthorized_has_www_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.get("/private")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_conflict_and_rate_limit_problems(client: httpx.AsyncClient) -> None:
    assert assert_problem(await client.get("/conflict"), 409)["detail"] == "username taken"
    limited = await client.get("/limited")
    assert_problem(limited, 429)
    assert limited.headers["retry-after"] == "12"


async def test_correlation_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/items/1", headers={"X-Correlation-ID": "abc-123"})
    assert echoed.headers["x-correlation-id"] == "abc-123"
    from_request_id = await client.get("/items/1", headers={"X-Request-ID": "req-9"})
    assert from_request_id.headers["x-correlation-id"] == "req-9"
    generated = await client.get("/items/1")
    assert len(generated.headers["x-correlation-id"]) >= 16
    # A header that could inject log fields is replaced, not echoed.
    injected = await client.get("/items/1", headers={"X-Correlation-ID": 'x", "level": "fake'})
    assert injected.headers["x-correlation-id"] != 'x", "level": "fake'
    on_error = await client.get("/nope", headers={"X-Correlation-ID": "err-1"})
    assert on_error.headers["x-correlation-id"] == "err-1"


async def test_access_log_is_json_without_query_string(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    # create_app configured logging before capsys swapped stdout: rebuild inside the test.
    async with asgi_client(build_app()) as fresh:
        capsys.readouterr()
        await fresh.get("/items/42?token=very-secret-token", headers={"X-Request-ID": "log-1"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    access = [line for line in lines if line.get("event") == "http_request"]
    assert len(access) == 1
    entry = access[0]
    assert entry["method"] == "GET"
    assert entry["route"] == "/items/{item_id}"
    assert entry["status"] == 200
    assert entry["correlation_id"] == "log-1"
    assert entry["service"] == "errors-test"
    assert entry["level"] == "info"
    assert entry["timestamp"].endswith("Z")
    assert isinstance(entry["duration_ms"], float | int)
    assert "very-secret-token" not in json.dumps(lines)


def test_problem_responses_document_problem_json() -> None:
    router = APIRouter()

    @router.get("/things/{thing_id}", responses=problem_responses(404, 409))
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    app = create_app(name="docs-test", settings=ServiceSettings(), routers=[router])
    responses = app.openapi()["paths"]["/things/{thing_id}"]["get"]["responses"]
    for status in ("404", "409"):
        schema = responses[status]["content"]["application/problem+json"]["schema"]
        assert {"type", "title", "status", "detail", "errors"} <= set(schema["properties"])


async def test_a_500_leaves_the_keep_alive_connection_usable() -> None:
    """A crash must not close the connection: a pooling proxy would reuse it for the next
    client's request and answer that client 502 (issue 11)."""
    async with serve(build_app()) as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for path in ("/boom", "/items/7", "/boom", "/items/8"):
                writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
                await writer.drain()
                status, headers, body = await _read_response(reader)
                expected = 500 if path == "/boom" else 200
                assert status == expected, body
                assert headers.get("connection") != "close"
                if expected == 500:
                    assert json.loads(body)["status"] == 500
                    assert b"hunter2" not in body
        finally:
            writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def test_building_an_app_loads_no_database_client() -> None:
    # Every process imports common.errors (CLIs, migrations, workers) and every app installs
    # its handlers: transient failures are recognised without importing the client libraries.
    code = (
        "import sys\n"
        "from common.app import create_app\n"
        "from common.settings import ServiceSettings\n"
        "create_app(name='x', settings=ServiceSettings(environment='test'), routers=[])\n"
        "libraries = ('asyncpg', 'sqlalchemy', 'neo4j', 'redis', 'aio_pika', 'limits')\n"
        "print(sorted(m for m in libraries if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert result.stdout.strip() == "[]"
