"""network_service: the follow graph in Neo4j.

Where things are: ``api/`` (HTTP: public follow-graph endpoints and the internal read APIs),
``service/follows.py`` (the rules, and which changes are announced), ``repository/`` (every
Cypher query, the schema, the Neo4j outbox), ``service/outbox_relay.py`` (outbox to RabbitMQ),
``events/handlers.py`` (user.registered / user.updated / user.deleted), ``app.py`` (wiring:
clients, the relay and the consumer), ``__main__.py`` (``serve | worker | migrate``).
"""

# The service's one name: its queues (network.events, ...) and the ``producer`` of the events it
# publishes, both persisted on running brokers (never rename), and, as ``network_service``, the
# ``service`` of its log lines and the title of its app and metrics.
SERVICE_NAME = "network"
