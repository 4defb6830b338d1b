"""post_service: posts, likes, comments, hashtags and full-text search (owns the posts database).

Where things are: ``api/`` (HTTP: public post endpoints and the internal read APIs),
``service/posts.py`` (the rules, and the events each change emits), ``service/users.py`` (the
author replica), ``repository/`` (SQL; events are written in the caller's transaction with
``common.outbox.emit``), ``events/handlers.py`` (user.* events), ``models.py`` and
``migrations/`` (the schema), ``app.py`` (wiring: clients, the consumer and the outbox
relay), ``__main__.py`` (``serve | worker | migrate``).
"""

# The service's one name: its queues (post.events, ...) and the ``producer`` of the events it
# publishes, both persisted on running brokers (never rename), and, as ``post_service``, the
# ``service`` of its log lines and the title of its app and metrics.
SERVICE_NAME = "post"
