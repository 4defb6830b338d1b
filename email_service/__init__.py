"""email_service: sends account mail (welcome, verification, password reset) from events.

Where things are: ``events/handlers.py`` (user.* events to mail), ``service/mailer.py`` (what
each event sends, at most once), ``service/compose.py`` (the messages, from ``templates/``),
``service/smtp.py``, ``repository/store.py`` (its Redis keys), ``app.py`` (wiring: the mailer
and the consumer), ``__main__.py`` (``serve | worker | migrate``). No public endpoints.
"""

# The service's one name: its queues (email.events, ...) and the ``producer`` of the events it
# publishes, both persisted on running brokers (never rename), and, as ``email_service``, the
# ``service`` of its log lines and the title of its app and metrics.
SERVICE_NAME = "email"
