"""Each service's one name (``<service>_service.SERVICE_NAME``) and what depends on it."""

from __future__ import annotations

import auth_service
import email_service
import feed_service
import network_service
import post_service
from common.events import CONSUMERS
from common.messaging.topology import queue_name

NAMES = {
    package.__name__: package.SERVICE_NAME
    for package in (auth_service, post_service, network_service, feed_service, email_service)
}


def test_names_are_the_ones_running_brokers_know() -> None:
    # Queues (``post.events``) are declared and event ``producer`` fields stored under these:
    # a rename would strand a running broker's queues, so the values are pinned here.
    assert NAMES == {
        "auth_service": "auth",
        "post_service": "post",
        "network_service": "network",
        "feed_service": "feed",
        "email_service": "email",
    }
    assert queue_name(post_service.SERVICE_NAME) == "post.events"


def test_common_routing_table_names_only_real_consumers() -> None:
    # common/ cannot import a service, so its table spells the names again: keep them in step.
    consumers = {name for names in CONSUMERS.values() for name in names}
    assert consumers <= set(NAMES.values()) - {"auth"}
