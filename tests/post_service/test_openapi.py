"""The service's OpenAPI document matches the post_service table of api.md."""

from __future__ import annotations

from typing import Any

from tests.post_service.conftest import PostHarness

# api.md, "Posts, likes, comments, search (post_service)": method, path, success status.
API_MD = [
    ("post", "/api/v1/posts", "201"),
    ("get", "/api/v1/posts/{post_id}", "200"),
    ("patch", "/api/v1/posts/{post_id}", "200"),
    ("delete", "/api/v1/posts/{post_id}", "204"),
    ("get", "/api/v1/users/{user_id}/posts", "200"),
    ("put", "/api/v1/posts/{post_id}/like", "204"),
    ("delete", "/api/v1/posts/{post_id}/like", "204"),
    ("get", "/api/v1/posts/{post_id}/likes", "200"),
    ("get", "/api/v1/posts/{post_id}/comments", "200"),
    ("post", "/api/v1/posts/{post_id}/comments", "201"),
    ("delete", "/api/v1/comments/{comment_id}", "204"),
    ("get", "/api/v1/posts", "200"),
]
INTERNAL = [("post", "/internal/v1/posts/batch"), ("post", "/internal/v1/posts/recent")]
POST_FIELDS = {
    "id",
    "author",
    "content",
    "created_at",
    "edited_at",
    "reply_to_id",
    "hashtags",
    "mentions",
    "like_count",
    "comment_count",
    "liked_by_me",
}


async def _spec(post: PostHarness) -> dict[str, Any]:
    r = await post.client.get("/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.json()
    return spec


async def test_openapi_has_every_endpoint_of_api_md(post: PostHarness) -> None:
    paths = (await _spec(post))["paths"]
    for method, path, success in API_MD:
        assert path in paths and method in paths[path], f"{method.upper()} {path} missing"
        assert success in paths[path][method]["responses"], f"{method.upper()} {path}"
    for method, path in INTERNAL:
        assert method in paths[path]
    public = {(m, p) for p, ops in paths.items() if p.startswith("/api/") for m in ops}
    assert public == {(m, p) for m, p, _ in API_MD}


async def test_openapi_shapes_match_api_md(post: PostHarness) -> None:
    spec = await _spec(post)
    schemas = spec["components"]["schemas"]
    assert set(schemas["Post"]["properties"]) == POST_FIELDS
    assert set(schemas["Comment"]["properties"]) == {
        "id",
        "post_id",
        "author",
        "content",
        "created_at",
    }
    assert set(schemas["UserSummary"]["properties"]) == {"id", "username", "display_name"}
    assert set(schemas["PostCreate"]["properties"]) == {"content", "reply_to_id"}
    assert schemas["PostCreate"]["additionalProperties"] is False
    assert set(schemas["PostUpdate"]["properties"]) == {"content"}
    assert set(schemas["CommentCreate"]["properties"]) == {"content"}

    paths = spec["paths"]
    search = {p["name"] for p in paths["/api/v1/posts"]["get"]["parameters"]}
    assert {"q", "tag", "limit", "cursor"} <= search
    for path in ("/api/v1/posts", "/api/v1/posts/{post_id}/comments"):
        headers = {p["name"] for p in paths[path]["post"]["parameters"] if p["in"] == "header"}
        assert "Idempotency-Key" in headers
    for path in (
        "/api/v1/users/{user_id}/posts",
        "/api/v1/posts/{post_id}/likes",
        "/api/v1/posts/{post_id}/comments",
    ):
        names = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert {"limit", "cursor"} <= names
