"""auth_service: identity, credentials, access and refresh tokens (owns the users database).

Where things are: ``api/`` (HTTP: auth, users, the JWK set, the pages linked from mail),
``service/auth.py`` (registration, login, rotation, verification, reset), ``service/keys.py``
(signing keys), ``service/limits.py`` (login limits), ``repository/`` (SQL), ``models.py`` and
``migrations/`` (the schema), ``app.py`` (wiring: clients, the outbox relay), ``__main__.py``
(``serve | worker | migrate``). It consumes no events; user.* events leave through the outbox.
"""

# The service's one name: its queues (auth.events, ...) and the ``producer`` of the events it
# publishes, both persisted on running brokers (never rename), and, as ``auth_service``, the
# ``service`` of its log lines and the title of its app and metrics.
SERVICE_NAME = "auth"
