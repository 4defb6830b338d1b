"""The public follow-graph endpoints of api.md, each success and error case."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j import AsyncDriver

from common.pagination import encode_cursor
from tests.network_service.conftest import NetworkHarness

pytestmark = pytest.mark.usefixtures("network")


async def seed_users(driver: AsyncDriver, *user_ids: str) -> None:
    """User nodes as user.registered would leave them (the event path has its own tests)."""
    await driver.execute_query(
        """
        UNWIND $ids AS id
        MERGE (u:User {id: id})
        SET u.username = 'u_' + id, u.display_name = 'U ' + id, u.profile_at = 0
        """,
        ids=list(user_ids),
        database_="neo4j",
    )


async def follow(net: NetworkHarness, follower: str, followee: str) -> None:
    response = await net.client.put(f"/api/v1/me/following/{followee}", headers=net.auth(follower))
    assert response.status_code == 204, response.text


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def follows_count(driver: AsyncDriver, follower: str, followee: str) -> int:
    records, _, _ = await driver.execute_query(
        "MATCH (:User {id: $a})-[r:FOLLOWS]->(:User {id: $b}) RETURN count(r) AS n",
        a=follower,
        b=followee,
        database_="neo4j",
    )
    return int(records[0]["n"])


# --- follow / unfollow -------------------------------------------------------------------


async def test_follow_then_lists_show_it(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    await seed_users(graph_driver, "alice", "bob")
    await follow(network, "alice", "bob")

    followers = (await network.client.get("/api/v1/users/bob/followers")).json()
    assert [item["id"] for item in followers["items"]] == ["alice"]
    item = followers["items"][0]
    assert item["username"] == "u_alice" and item["display_name"] == "U alice"
    assert item["followed_at"].endswith("Z") and len(item["followed_at"]) == 24
    assert followers["next_cursor"] is None

    following = (await network.client.get("/api/v1/users/alice/following")).json()
    assert [item["id"] for item in following["items"]] == ["bob"]
    assert following["items"][0]["followed_at"] == item["followed_at"]


async def test_follow_is_idempotent(network: NetworkHarness, graph_driver: AsyncDriver) -> None:
    await seed_users(graph_driver, "alice", "bob")
    await follow(network, "alice", "bob")
    first = (await network.client.get("/api/v1/users/bob/followers")).json()["items"]
    await follow(network, "alice", "bob")
    assert await follows_count(graph_driver, "alice", "bob") == 1
    # The original follow time is kept.
    assert (await network.client.get("/api/v1/users/bob/followers")).json()["items"] == first


async def test_unfollow_is_idempotent(network: NetworkHarness, graph_driver: AsyncDriver) -> None:
    await seed_users(graph_driver, "alice", "bob")
    await follow(network, "alice", "bob")
    for _ in range(2):
        response = await network.client.delete(
            "/api/v1/me/following/bob", headers=network.auth("alice")
        )
        assert response.status_code == 204
    assert await follows_count(graph_driver, "alice", "bob") == 0
    assert (await network.client.get("/api/v1/users/bob/followers")).json()["items"] == []
    # Unfollowing someone never followed, or unknown, is a no-op too.
    response = await network.client.delete(
        "/api/v1/me/following/nobody", headers=network.auth("alice")
    )
    assert response.status_code == 204


async def test_self_follow_is_422(network: NetworkHarness, graph_driver: AsyncDriver) -> None:
    await seed_users(graph_driver, "alice")
    response = await network.client.put("/api/v1/me/following/alice", headers=network.auth("alice"))
    problem(response, 422)
    assert await follows_count(graph_driver, "alice", "alice") == 0


async def test_follow_unknown_user_is_404(network: NetworkHarness) -> None:
    response = await network.client.put("/api/v1/me/following/ghost", headers=network.auth("alice"))
    problem(response, 404)


async def test_caller_unknown_to_the_graph_can_follow(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    """The caller's own user.registered may lag: the node comes from the token's claims."""
    await seed_users(graph_driver, "bob")
    response = await network.client.put(
        "/api/v1/me/following/bob", headers=network.auth("newbie", "newbie_name")
    )
    assert response.status_code == 204
    items = (await network.client.get("/api/v1/users/bob/followers")).json()["items"]
    assert [(i["id"], i["username"], i["display_name"]) for i in items] == [
        ("newbie", "newbie_name", "newbie_name")
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/me/following/bob"),
        ("DELETE", "/api/v1/me/following/bob"),
        ("GET", "/api/v1/me/suggestions"),
    ],
)
async def test_writes_and_suggestions_need_a_token(
    network: NetworkHarness, graph_driver: AsyncDriver, method: str, path: str
) -> None:
    await seed_users(graph_driver, "alice", "bob")
    response = await network.client.request(method, path)
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    expired = network.tokens.mint("alice", "alice", expired=True)
    response = await network.client.request(
        method, path, headers={"Authorization": f"Bearer {expired}"}
    )
    problem(response, 401)
    assert await follows_count(graph_driver, "alice", "bob") == 0


async def test_overlong_user_id_is_422(network: NetworkHarness) -> None:
    response = await network.client.put(
        "/api/v1/me/following/" + "x" * 65, headers=network.auth("alice")
    )
    problem(response, 422)


# --- followers / following ---------------------------------------------------------------


@pytest.mark.parametrize("which", ["followers", "following", "relationship"])
async def test_unknown_user_is_404(network: NetworkHarness, which: str) -> None:
    problem(await network.client.get(f"/api/v1/users/ghost/{which}"), 404)


async def test_lists_page_newest_follow_first_without_gaps(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    followers = [f"f{i}" for i in range(7)]
    await seed_users(graph_driver, "star", *followers)
    for follower in followers:
        await follow(network, follower, "star")
    # Two follows in the same millisecond are ordered by id; force a tie to cover it.
    await graph_driver.execute_query(
        """
        MATCH (:User {id: 'f5'})-[r5:FOLLOWS]->(:User {id: 'star'})
        MATCH (:User {id: 'f6'})-[r6:FOLLOWS]->(:User {id: 'star'})
        SET r5.since = r6.since
        """,
        database_="neo4j",
    )

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = (await network.client.get("/api/v1/users/star/followers", params=params)).json()
        pages += 1
        seen.extend(item["id"] for item in body["items"])
        # A follow arriving mid-paging is newer than the cursor: never shown, never shifts.
        if pages == 1:
            await seed_users(graph_driver, "late")
            await follow(network, "late", "star")
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["f6", "f5", "f4", "f3", "f2", "f1", "f0"]
    assert pages == 3

    following = (await network.client.get("/api/v1/users/f0/following")).json()
    assert [item["id"] for item in following["items"]] == ["star"]


async def test_following_is_newest_first(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    await seed_users(graph_driver, "me", "a", "b", "c")
    for target in ("b", "c", "a"):
        await follow(network, "me", target)
    body = (await network.client.get("/api/v1/users/me/following", params={"limit": 2})).json()
    assert [item["id"] for item in body["items"]] == ["a", "c"]
    body = (
        await network.client.get(
            "/api/v1/users/me/following", params={"limit": 2, "cursor": body["next_cursor"]}
        )
    ).json()
    assert [item["id"] for item in body["items"]] == ["b"]
    assert body["next_cursor"] is None


@pytest.mark.parametrize("limit", [0, 101, -1, "x"])
@pytest.mark.parametrize("which", ["followers", "following"])
async def test_limit_out_of_range_is_422(
    network: NetworkHarness, graph_driver: AsyncDriver, which: str, limit: Any
) -> None:
    await seed_users(graph_driver, "alice")
    response = await network.client.get(f"/api/v1/users/alice/{which}", params={"limit": limit})
    problem(response, 422)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor!!",
        "e30",  # {} : valid base64 JSON, but not one of ours
        encode_cursor({"s": "yesterday", "i": "x"}),
        encode_cursor({"s": 1, "i": 2}),
        encode_cursor({"a": "x"}),
    ],
)
@pytest.mark.parametrize("which", ["followers", "following"])
async def test_garbled_cursor_is_422(
    network: NetworkHarness, graph_driver: AsyncDriver, which: str, cursor: str
) -> None:
    await seed_users(graph_driver, "alice")
    response = await network.client.get(f"/api/v1/users/alice/{which}", params={"cursor": cursor})
    body = problem(response, 422)
    assert "Traceback" not in response.text and "MATCH" not in response.text
    assert body["errors"][0]["loc"] == ["query", "cursor"]


# --- relationship ------------------------------------------------------------------------


async def relationship(net: NetworkHarness, user: str, viewer: str | None = None) -> Any:
    """GET /users/{user}/relationship as ``viewer`` (anonymous when None): the body."""
    headers = net.auth(viewer) if viewer else {}
    response = await net.client.get(f"/api/v1/users/{user}/relationship", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def counts(followers: int, following: int, *, by_me: bool, follows_me: bool) -> dict[str, Any]:
    return {
        "followers_count": followers,
        "following_count": following,
        "followed_by_me": by_me,
        "follows_me": follows_me,
    }


async def test_relationship_counts_and_flags(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    await seed_users(graph_driver, "me", "them", "x", "y")
    await follow(network, "me", "them")
    await follow(network, "x", "them")
    await follow(network, "them", "y")

    anonymous = await relationship(network, "them")
    assert anonymous == counts(2, 1, by_me=False, follows_me=False)
    mine = await relationship(network, "them", "me")
    assert mine["followed_by_me"] is True and mine["follows_me"] is False

    await follow(network, "them", "me")
    assert await relationship(network, "them", "me") == counts(2, 2, by_me=True, follows_me=True)
    theirs = await relationship(network, "me", "y")
    assert theirs == counts(1, 1, by_me=False, follows_me=False)


async def test_relationship_with_a_bad_token_is_401(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    await seed_users(graph_driver, "them")
    response = await network.client.get(
        "/api/v1/users/them/relationship", headers={"Authorization": "Bearer garbage"}
    )
    problem(response, 401)


# --- suggestions -------------------------------------------------------------------------


async def test_suggestions_rank_friends_of_friends_by_mutual_count(
    network: NetworkHarness, graph_driver: AsyncDriver
) -> None:
    """A small known graph.

    me -> a, b, c.  a -> x, y, z, me, b.  b -> x, y.  c -> x, w.
    Candidates: x (a, b, c = 3), y (a, b = 2), z (a = 1), w (c = 1).
    Excluded: me (self) and b (already followed, though a follows b).
    """
    await seed_users(graph_driver, "me", "a", "b", "c", "x", "y", "z", "w", "lonely")
    edges = {
        "me": ["a", "b", "c"],
        "a": ["x", "y", "z", "me", "b"],
        "b": ["x", "y"],
        "c": ["x", "w"],
    }
    for follower, followees in edges.items():
        for followee in followees:
            await follow(network, follower, followee)

    response = await network.client.get("/api/v1/me/suggestions", headers=network.auth("me"))
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(s["id"], s["mutual_count"]) for s in items] == [
        ("x", 3),
        ("y", 2),
        ("w", 1),  # ties broken by id
        ("z", 1),
    ]
    assert items[0]["username"] == "u_x" and items[0]["display_name"] == "U x"

    limited = await network.client.get(
        "/api/v1/me/suggestions", params={"limit": 2}, headers=network.auth("me")
    )
    assert [s["id"] for s in limited.json()["items"]] == ["x", "y"]

    # Following a suggestion removes it.
    await follow(network, "me", "x")
    response = await network.client.get("/api/v1/me/suggestions", headers=network.auth("me"))
    assert [s["id"] for s in response.json()["items"]] == ["y", "w", "z"]

    nobody = await network.client.get("/api/v1/me/suggestions", headers=network.auth("lonely"))
    assert nobody.status_code == 200 and nobody.json()["items"] == []


@pytest.mark.parametrize("limit", [0, 101])
async def test_suggestions_limit_out_of_range_is_422(network: NetworkHarness, limit: int) -> None:
    response = await network.client.get(
        "/api/v1/me/suggestions", params={"limit": limit}, headers=network.auth("me")
    )
    problem(response, 422)


# --- contract ----------------------------------------------------------------------------

# api.md, "Follow graph", verbatim methods and paths.
FOLLOW_GRAPH_TABLE = {
    ("put", "/api/v1/me/following/{user_id}"),
    ("delete", "/api/v1/me/following/{user_id}"),
    ("get", "/api/v1/users/{id}/followers"),
    ("get", "/api/v1/users/{id}/following"),
    ("get", "/api/v1/users/{id}/relationship"),
    ("get", "/api/v1/me/suggestions"),
}
INTERNAL_TABLE = {
    ("get", "/internal/v1/users/{id}/followers"),
    ("get", "/internal/v1/users/{id}/followees"),
    ("get", "/internal/v1/users/{id}/follower-count"),
}


def _normalise(path: str) -> str:
    # Path parameter names are not part of the contract: {user_id} and {id} are the same route.
    parts = ["{}" if p.startswith("{") else p for p in path.split("/")]
    return "/".join(parts)


async def test_openapi_matches_the_contract(network: NetworkHarness) -> None:
    spec = (await network.client.get("/openapi.json")).json()
    served = {
        (method, _normalise(path))
        for path, operations in spec["paths"].items()
        for method in operations
        if path.startswith(("/api/", "/internal/"))
    }
    expected = {(m, _normalise(p)) for m, p in FOLLOW_GRAPH_TABLE | INTERNAL_TABLE}
    assert served == expected

    def operation(method: str, path_prefix: str, suffix: str) -> dict[str, Any]:
        for path, operations in spec["paths"].items():
            if path.startswith(path_prefix) and path.endswith(suffix) and method in operations:
                return dict(operations[method])
        raise AssertionError(f"{method} {path_prefix}...{suffix} not served")

    follow_op = operation("put", "/api/v1/me/following", "}")
    assert {"204", "404", "422"} <= set(follow_op["responses"])
    schemas = spec["components"]["schemas"]
    item = schemas["FollowListItem"]["properties"]
    assert {"id", "username", "display_name", "followed_at"} <= set(item)
    assert set(schemas["Relationship"]["properties"]) == {
        "followers_count",
        "following_count",
        "followed_by_me",
        "follows_me",
    }
    assert {"id", "username", "display_name", "mutual_count"} <= set(
        schemas["SuggestionItem"]["properties"]
    )
    for suffix in ("/followers", "/following"):
        params = {p["name"] for p in operation("get", "/api/v1/users", suffix)["parameters"]}
        assert {"limit", "cursor"} <= params
