"""GET /api/v1/me/feed."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response

from common.pagination import PageDep
from common.security import CurrentUser
from feed_service.api.deps import FeedReaderDep
from feed_service.schemas import PostPage
from feed_service.service.reader import FeedCursor, parse_cursor

router = APIRouter(prefix="/api/v1/me", tags=["feed"])


@router.get("/feed", response_model=PostPage)
async def home_feed(user: CurrentUser, page: PageDep, reader: FeedReaderDep) -> Response:
    """Your home feed, newest first: your posts, those of everyone you follow, mentions."""
    body = await reader.page(user.sub, page.limit, parse_cursor(page.after(FeedCursor)))
    # The hot path: serialised by orjson straight from the dicts hydration built in the
    # PostPage shape, rather than validated into models and dumped again (response_model
    # still documents it; tests compare answers with the schema).
    return Response(orjson.dumps(body), media_type="application/json")
