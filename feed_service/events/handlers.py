"""Handlers of the events feed_service consumes (queue ``feed.events``).

Every handler is idempotent: feed writes are ZADD/ZREM of deterministic members, counters go
through seen-sets, notifications through per-event claims, and deletions leave tombstones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from common.events import (
    CommentCreated,
    CommentDeleted,
    EventEnvelope,
    PostCreated,
    PostDeleted,
    PostLiked,
    PostUnliked,
    PostUpdated,
    UserDeleted,
    UserFollowed,
    UserRegistered,
    UserUnfollowed,
    UserUpdated,
)
from common.messaging.handlers import EventHandlers
from common.time import to_ms
from feed_service.repository.sources import SourceNotFound
from feed_service.service.fanout import FanoutPublisher
from feed_service.service.feed_manager import Entry, FeedManager, entry_post, make_entry
from feed_service.service.notifications import NotificationStore
from feed_service.service.post_cache import PostCache

__all__ = ["FeedEvents"]


class FeedEvents:
    def __init__(
        self,
        feeds: FeedManager,
        cache: PostCache,
        notifications: NotificationStore,
        fanout: FanoutPublisher,
    ) -> None:
        self.feeds = feeds
        self.cache = cache
        self.notifications = notifications
        self.fanout = fanout
        self.settings = feeds.settings

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(PostCreated)(self.post_created)
        handlers.on(PostUpdated)(self.post_updated)
        handlers.on(PostDeleted)(self.post_deleted)
        handlers.on(UserFollowed)(self.user_followed)
        handlers.on(UserUnfollowed)(self.user_unfollowed)
        handlers.on(UserRegistered)(self.user_registered)
        handlers.on(UserUpdated)(self.user_updated)
        handlers.on(UserDeleted)(self.user_deleted)
        handlers.on(PostLiked)(self.post_liked)
        handlers.on(PostUnliked)(self.post_unliked)
        handlers.on(CommentCreated)(self.comment_created)
        handlers.on(CommentDeleted)(self.comment_deleted)
        return handlers

    async def _spread(
        self,
        key: str,
        op: Literal["add", "remove"],
        user_ids: Sequence[str],
        *,
        entries: Sequence[Entry] = (),
        members: Sequence[str] = (),
    ) -> None:
        """Small audiences are written inline; large ones go to the fan-out workers."""
        if len(user_ids) <= self.settings.inline_fanout_max:
            if op == "add":
                await self.feeds.insert(user_ids, entries)
            else:
                await self.feeds.remove(user_ids, members)
            return
        batches = self.fanout.split(key, op, user_ids, entries=entries, members=members)
        await self.fanout.publish(batches)

    # ------------------------------------------------------------------ posts
    async def post_created(self, event: PostCreated, envelope: EventEnvelope) -> None:
        if await self.cache.is_tombstoned(event.post_id):
            return  # deleted before we saw it: never show it
        await self.cache.store_created(event)
        member, score = make_entry(event.post_id, event.author_id, to_ms(event.created_at))
        await self.feeds.record_post(event.author_id, member, score)
        mentioned = [m for m in dict.fromkeys(event.mention_ids) if m != event.author_id]
        # The author's own feed and mentioned users' feeds get it whatever the author's size.
        await self.feeds.insert([event.author_id, *mentioned], [(member, score)])
        await self.feeds.note_own_post(event.author_id, score)
        for user_id in mentioned:
            await self.notifications.notify(
                user_id,
                "mention",
                actor_id=event.author_id,
                event_id=envelope.id,
                post_id=event.post_id,
            )
        await self.feeds.ensure_followers(event.author_id)
        if await self._hybrid(event.author_id):
            return  # merged at read time instead
        followers = await self.feeds.followers(event.author_id)
        await self._spread(event.post_id, "add", followers, entries=[(member, score)])

    async def _hybrid(self, author_id: str) -> bool:
        """Whether the author's posts are merged at read time (marking or unmarking it)."""
        big, marked = await self.feeds.hybrid_state(author_id)
        if big and not marked:
            await self.feeds.mark_big(author_id)
        elif marked and not big:
            # Back to fan-out: the posts of its big period go into its followers' feeds
            # first, then reads stop merging them (a redelivery redoes it idempotently).
            await self.feeds.ensure_author_index(author_id)
            entries = await self.feeds.author_entries(author_id, self.settings.feed_cap)
            followers = await self.feeds.followers(author_id)
            if entries and followers:
                await self._spread(f"unbig-{author_id}", "add", followers, entries=entries)
            await self.feeds.unmark_big(author_id)
        return big

    async def post_updated(self, event: PostUpdated, envelope: EventEnvelope) -> None:
        await self.cache.store_updated(event.post_id, event.content, event.edited_at)

    async def post_deleted(self, event: PostDeleted, envelope: EventEnvelope) -> None:
        mentioned = await self.cache.delete(event.post_id)
        member, _score = make_entry(event.post_id, event.author_id, 0)
        await self.feeds.forget_post(event.author_id, member)
        await self.feeds.remove([event.author_id, *mentioned], [member])
        followers = await self.feeds.followers(event.author_id)
        await self._spread(event.post_id, "remove", followers, members=[member])

    # ------------------------------------------------------------------ graph
    async def _follows_now(self, follower_id: str, followee_id: str) -> bool:
        """Whether network_service's graph holds the follow now.

        Events of one pair can arrive out of order: a follow whose handling failed (a source
        down) comes back from a retry queue seconds later, after the unfollow that followed
        it. Applied then, it would put the follower back in the follower replica for good,
        and every later post of the followee into the feed. The graph commits before its
        event is relayed, so the graph now is at least as new as the event handled.
        """
        try:
            return followee_id in await self.feeds.network.followees(follower_id)
        except SourceNotFound:
            return False  # the follower is gone: its user.deleted takes everything back

    async def user_followed(self, event: UserFollowed, envelope: EventEnvelope) -> None:
        if not await self._follows_now(event.follower_id, event.followee_id):
            return  # undone since: the unfollow's event is (or will be) handled
        await self.feeds.add_follow(event.follower_id, event.followee_id)
        if not await self._hybrid(event.followee_id):
            await self.feeds.merge(event.follower_id, event.followee_id)
        await self.notifications.notify(
            event.followee_id, "follow", actor_id=event.follower_id, event_id=envelope.id
        )

    async def user_unfollowed(self, event: UserUnfollowed, envelope: EventEnvelope) -> None:
        if await self._follows_now(event.follower_id, event.followee_id):
            return  # followed again since: that newer follow is the state to keep
        await self.feeds.remove_follow(event.follower_id, event.followee_id)
        await self.feeds.unmerge(event.follower_id, event.followee_id)
        await self._hybrid(event.followee_id)  # may fall below the unmark level

    # ------------------------------------------------------------------ users
    async def user_registered(self, event: UserRegistered, envelope: EventEnvelope) -> None:
        await self.cache.upsert_user(event.user_id, event.username, event.display_name)
        # A new account's replicas are complete from the start: every later change arrives
        # as an event, so no rebuild from the sources is needed for them.
        await self.cache.mark_likes_tracked(event.user_id)
        await self.feeds.start_account(event.user_id)

    async def user_updated(self, event: UserUpdated, envelope: EventEnvelope) -> None:
        await self.cache.upsert_user(event.user_id, event.username, event.display_name)

    async def user_deleted(self, event: UserDeleted, envelope: EventEnvelope) -> None:
        user_id = event.user_id
        # Tombstone first: reads drop the account's entries at once, wherever they still are.
        await self.cache.delete_user(user_id)
        members = [m for m, _s in await self.feeds.author_entries(user_id, 100_000)]
        followers = await self.feeds.followers(user_id, load=False)
        for member in members:
            await self.cache.delete(entry_post(member))
        if members:
            await self._spread(f"user-{user_id}", "remove", followers, members=members)
        await self.feeds.drop_user(user_id)

    # ---------------------------------------------------------- likes/comments
    async def post_liked(self, event: PostLiked, envelope: EventEnvelope) -> None:
        await self.cache.count_like(event.post_id, event.user_id, add=True)
        await self._notify_post_author(event, envelope, actor_id=event.user_id)

    async def post_unliked(self, event: PostUnliked, envelope: EventEnvelope) -> None:
        await self.cache.count_like(event.post_id, event.user_id, add=False)
        await self.notifications.retract(event.post_author_id, _ref(event))

    async def comment_created(self, event: CommentCreated, envelope: EventEnvelope) -> None:
        await self.cache.count_comment(event.post_id, event.comment_id, add=True)
        await self._notify_post_author(event, envelope, actor_id=event.author_id)

    async def comment_deleted(self, event: CommentDeleted, envelope: EventEnvelope) -> None:
        await self.cache.count_comment(event.post_id, event.comment_id, add=False)
        await self.notifications.retract(event.post_author_id, _ref(event))

    async def _notify_post_author(
        self, event: PostLiked | CommentCreated, envelope: EventEnvelope, *, actor_id: str
    ) -> None:
        """A like or a comment tells the post's author, once per event; its undoing retracts
        the notification by the same ``_ref``."""
        comment_id = event.comment_id if isinstance(event, CommentCreated) else None
        await self.notifications.notify(
            event.post_author_id,
            "like" if comment_id is None else "comment",
            actor_id=actor_id,
            event_id=envelope.id,
            post_id=event.post_id,
            comment_id=comment_id,
            ref=_ref(event),
        )


def _ref(event: PostLiked | PostUnliked | CommentCreated | CommentDeleted) -> str:
    """What a like's (a comment's) notification is retracted by: its post and liker (its id)."""
    if isinstance(event, PostLiked | PostUnliked):
        return f"like:{event.post_id}:{event.user_id}"
    return f"comment:{event.comment_id}"
