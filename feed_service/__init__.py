"""feed_service: home feeds (hybrid fan-out on Redis) and notifications (SSE).

Where things are: ``api/`` (HTTP: the feed and notifications), ``service/feed_manager.py``
(feed keys and the fan-out rules), ``service/reader.py`` (reading a feed), ``service/fanout.py``
(fan-out batches over RabbitMQ), ``service/post_cache.py`` (post and user replicas),
``service/notifications.py``, ``repository/`` (Redis keys and client, the post and network
clients), ``events/handlers.py`` (post.*, user.* and follow events), ``reconcile.py`` (repair
drift), ``app.py`` (wiring: clients, the consumer and the fan-out workers), ``__main__.py``
(``serve | worker | migrate | reconcile``).
"""

# The service's one name: its queues (feed.events, ...) and the ``producer`` of the events it
# publishes, both persisted on running brokers (never rename), and, as ``feed_service``, the
# ``service`` of its log lines and the title of its app and metrics.
SERVICE_NAME = "feed"
