"""Dependencies handing out the services built in the app's lifespan."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from feed_service.service.notifications import NotificationStore
from feed_service.service.reader import FeedReader

__all__ = ["FeedReaderDep", "NotificationsDep"]


async def _reader(request: Request) -> FeedReader:
    return cast(FeedReader, request.app.state.feed_reader)


async def _notifications(request: Request) -> NotificationStore:
    return cast(NotificationStore, request.app.state.notifications)


FeedReaderDep = Annotated[FeedReader, Depends(_reader)]
NotificationsDep = Annotated[NotificationStore, Depends(_notifications)]
