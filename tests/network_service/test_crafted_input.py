"""Crafted input (malformed tokens, forged cursors) is a 4xx problem, never a 500."""

from __future__ import annotations

import base64

import httpx
import pytest
from neo4j import AsyncDriver

from common.internal import internal_headers
from tests.network_service.conftest import NetworkHarness

pytestmark = pytest.mark.usefixtures("network")


def raw_cursor(json_text: str) -> str:
    return base64.urlsafe_b64encode(json_text.encode()).rstrip(b"=").decode()


def assert_invalid_cursor(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"loc": ["query", "cursor"], "msg": "Invalid cursor"}]


async def test_malformed_token_is_401_on_suggestions(network: NetworkHarness) -> None:
    token = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6MTIzfQ.e30.AAAA"
    response = await network.client.get(
        "/api/v1/me/suggestions", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "forged",
    [
        '{"s": 99999999999999999999, "i": "x"}',  # past Neo4j's 64-bit integers
        '{"s": 9223372036854775808, "i": "x"}',
        '{"s": true, "i": "x"}',
        '{"s": 1.5, "i": "x"}',
        '{"s": 1, "i": ""}',
        '{"s": 1, "i": 2}',
    ],
)
async def test_forged_follow_list_cursor_is_422(
    network: NetworkHarness, graph_driver: AsyncDriver, forged: str
) -> None:
    await graph_driver.execute_query(
        "MERGE (u:User {id: 'me'}) SET u.username = 'u_me', u.display_name = 'Me'",
        database_="neo4j",
    )
    for which in ("followers", "following"):
        response = await network.client.get(
            f"/api/v1/users/me/{which}", params={"cursor": raw_cursor(forged)}
        )
        assert_invalid_cursor(response)


async def test_forged_internal_cursor_is_422(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    await graph_driver.execute_query("MERGE (:User {id: 'me'})", database_="neo4j")
    for forged in ['{"a": 5}', '{"a": ""}', '{"b": "x"}']:
        response = await network.client.get(
            "/internal/v1/users/me/followers",
            params={"cursor": raw_cursor(forged)},
            headers=internal_headers(network.app.state.settings),
        )
        assert_invalid_cursor(response)
