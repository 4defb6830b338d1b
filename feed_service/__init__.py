"""feed_service: home feeds (hybrid fan-out on Redis) and notifications (SSE).

Where things are: ``api/`` (HTTP: the feed and notifications), ``service/feed_manager.py``
(feed keys and the fan-out rules), ``service/reader.py`` (reading a feed), ``service/fanout.py``
(fan-out batches over RabbitMQ), ``service/post_cache.py`` (post and user replicas),
``service/notifications.py``, ``repository/`` (Redis keys and client, the post and network
clients), ``events/handlers.py`` (post.*, user.* and follow events), ``reconcile.py`` (repair
drift), ``app.py`` (wiring: clients, the consumer and the fan-out workers), ``__main__.py``
(``serve | worker | migrate | reconcile``).
"""
