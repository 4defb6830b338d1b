"""Opaque cursors, ``PageParams`` bounds, ``make_page`` and ``make_keyed_page``."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from common.app import create_app
from common.errors import Unprocessable
from common.pagination import (
    Cursor,
    CursorFloat,
    CursorId,
    CursorInt,
    CursorTime,
    Page,
    PageDep,
    decode_cursor,
    encode_cursor,
    make_keyed_page,
    make_page,
)
from common.settings import ServiceSettings


class NCursor(Cursor):
    n: CursorInt


class AnyCursor(Cursor):
    """Every bounded field type, each optional, to test them one at a time."""

    i: CursorInt | None = None
    f: CursorFloat | None = None
    t: CursorTime | None = None
    s: CursorId | None = None


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter()

    @router.get("/things")
    async def things(page: PageDep) -> Page[int]:
        after = page.after(NCursor)
        start = after.n if after else 0
        rows = list(range(start, min(start + page.limit + 1, 45)))
        return make_page(rows, page.limit, lambda n: {"n": n + 1})

    app = create_app(
        name="pagination-test", settings=ServiceSettings(environment="test"), routers=[router]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


_T = datetime(2026, 11, 22, 0, 13, 42, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"i": 1_732_000_000_123, "s": "0193a1b2"}, AnyCursor(i=1_732_000_000_123, s="0193a1b2")),
        ({"f": 0.5, "s": "ünïcødé ✓"}, AnyCursor(f=0.5, s="ünïcødé ✓")),
        ({"i": -(2**63), "f": 3}, AnyCursor(i=-(2**63), f=3.0)),
        ({"i": 2**63 - 1, "t": _T.isoformat()}, AnyCursor(i=2**63 - 1, t=_T)),
        ({"t": "2026-11-22T01:13:42.123+01:00"}, AnyCursor(t=_T)),
        ({}, AnyCursor()),
    ],
)
def test_cursor_round_trip(data: dict[str, Any], expected: AnyCursor) -> None:
    cursor = encode_cursor(data)
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
    assert decode_cursor(cursor, AnyCursor) == expected


def _raw(json_text: str) -> str:
    return base64.urlsafe_b64encode(json_text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "forged",
    [
        '{"i": true}',  # a bool is no int
        '{"i": 1.0}',
        '{"i": "1"}',
        '{"i": 9223372036854775808}',  # past 64 bits (Neo4j, Redis)
        '{"i": -9223372036854775809}',
        '{"i": 99999999999999999999999999999}',
        '{"f": 1' + "0" * 400 + "}",  # float() of it overflows
        '{"f": 1e400}',
        '{"f": -Infinity}',
        '{"f": NaN}',
        '{"f": true}',
        '{"f": "0.5"}',
        '{"t": "0001-01-01T00:00:00+01:00"}',  # no UTC datetime for it
        '{"t": "9999-12-31T23:59:59-01:00"}',
        '{"t": "1969-12-31T23:59:59Z"}',
        '{"t": "2026-01-01T00:00:00"}',  # naive
        '{"t": 1732000000}',
        '{"t": "yesterday"}',
        '{"s": "a\\u0000b"}',
        '{"s": "a\\ud800b"}',
        '{"s": ""}',
        '{"s": 5}',
        '{"s": "' + "x" * 257 + '"}',
        '{"other": 1}',  # not this list's cursor
    ],
)
def test_forged_cursor_fields_are_unprocessable(forged: str) -> None:
    with pytest.raises(Unprocessable) as info:
        decode_cursor(_raw(forged), AnyCursor)
    assert info.value.errors == [{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a cursor!",
        "%%%%",
        "abc",  # base64 of no JSON
        base64.urlsafe_b64encode(b"[1, 2]").decode(),  # JSON, but not an object
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        base64.urlsafe_b64encode(b'{"a": 1').decode(),  # truncated
        encode_cursor({"k": "v" * 2000}),  # too long to be ours
    ],
)
def test_garbage_cursor_is_unprocessable(garbage: str) -> None:
    with pytest.raises(Unprocessable) as info:
        decode_cursor(garbage, AnyCursor)
    assert info.value.errors == [{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]


async def test_pages_walk_without_gaps_or_repeats(client: httpx.AsyncClient) -> None:
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/things", params=params)
        assert response.status_code == 200
        body = response.json()
        seen += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(45))
    assert pages == 5


async def test_default_limit_is_20(client: httpx.AsyncClient) -> None:
    body = (await client.get("/things")).json()
    assert len(body["items"]) == 20
    assert body["next_cursor"] is not None


@pytest.mark.parametrize("limit", ["1", "100"])
async def test_limit_bounds_accepted(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/things", params={"limit": limit})
    assert response.status_code == 200
    assert len(response.json()["items"]) == min(int(limit), 45)


@pytest.mark.parametrize("limit", ["0", "101", "-5", "ten"])
async def test_limit_out_of_range_is_422(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/things", params={"limit": limit})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["query", "limit"]


async def test_garbled_cursor_is_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/things", params={"cursor": "garbled!!"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]


def test_make_page_last_page_has_no_cursor() -> None:
    page = make_page([1, 2, 3], 3, lambda n: {"n": n})
    assert page.items == [1, 2, 3]
    assert page.next_cursor is None
    more = make_page([1, 2, 3, 4], 3, lambda n: {"n": n})
    assert more.items == [1, 2, 3]
    assert more.next_cursor is not None
    assert decode_cursor(more.next_cursor, NCursor) == NCursor(n=3)


def test_keyed_page_shows_items_and_makes_the_cursor_from_the_key() -> None:
    rows = [(10, "a"), (20, "b"), (30, "c")]
    page = make_keyed_page(rows, 2, lambda key: {"n": key})
    assert page.items == ["a", "b"]
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor, NCursor) == NCursor(n=20)
    last = make_keyed_page(rows, 3, lambda key: {"n": key})
    assert (last.items, last.next_cursor) == (["a", "b", "c"], None)


async def test_forged_cursor_is_422_before_the_list_runs(client: httpx.AsyncClient) -> None:
    response = await client.get("/things", params={"cursor": _raw('{"n": true}')})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]
