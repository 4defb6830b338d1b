"""Notifications: list with unread count, mark read, and a live SSE stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import AfterValidator
from sse_starlette import EventSourceResponse, ServerSentEvent

from common.pagination import Cursor, CursorId, PageDep, encode_cursor
from common.security import CurrentUser
from feed_service.api.deps import NotificationsDep
from feed_service.schemas import MarkRead, NotificationPage
from feed_service.service.notifications import check_notification_id, parse_stream_id

router = APIRouter(prefix="/api/v1/me/notifications", tags=["notifications"])


class NotificationCursor(Cursor):
    id: Annotated[CursorId, AfterValidator(check_notification_id)]


@router.get("", response_model=NotificationPage)
async def list_notifications(
    user: CurrentUser, page: PageDep, store: NotificationsDep
) -> dict[str, Any]:
    after = page.after(NotificationCursor)
    items, more = await store.page(user.sub, page.limit, after.id if after else None)
    next_cursor = encode_cursor({"id": items[-1]["id"]}) if more and items else None
    return {
        "items": items,
        "next_cursor": next_cursor,
        "unread_count": await store.unread_count(user.sub),
    }


@router.post("/read", status_code=status.HTTP_204_NO_CONTENT)
async def mark_read(
    user: CurrentUser, store: NotificationsDep, body: MarkRead | None = None
) -> Response:
    """Mark notifications read up to ``up_to_id`` (inclusive), or all of them."""
    await store.mark_read(user.sub, body.up_to_id if body is not None else None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_notifications(
    request: Request,
    user: CurrentUser,
    store: NotificationsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Each new notification as an SSE event (id = notification id), with heartbeats.

    Reconnecting with ``Last-Event-ID`` replays what was missed, on any replica: the ids are
    positions in the user's Redis stream.
    """
    if last_event_id:
        # Checked before the stream starts: an id Redis refuses would otherwise end the
        # stream right after its 200.
        parse_stream_id(last_event_id, loc=["header", "Last-Event-ID"])
        start = last_event_id
    else:
        start = await store.latest_id(user.sub)
    settings = request.app.state.settings

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for notification in store.follow(user.sub, start):
            yield ServerSentEvent(data=json.dumps(notification), id=notification["id"])

    return EventSourceResponse(events(), ping=settings.sse_heartbeat_s)
