"""GET /api/v1/me/feed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from common.pagination import PageDep
from common.security import CurrentUser
from feed_service.api.deps import FeedReaderDep
from feed_service.schemas import PostPage
from feed_service.service.reader import FeedCursor, parse_cursor

router = APIRouter(prefix="/api/v1/me", tags=["feed"])


@router.get("/feed", response_model=PostPage)
async def home_feed(user: CurrentUser, page: PageDep, reader: FeedReaderDep) -> dict[str, Any]:
    """Your home feed, newest first: your posts, those of everyone you follow, mentions."""
    return await reader.page(user.sub, page.limit, parse_cursor(page.after(FeedCursor)))
