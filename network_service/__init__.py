"""network_service: the follow graph in Neo4j.

Where things are: ``api/`` (HTTP: public follow-graph endpoints and the internal read APIs),
``service/follows.py`` (the rules, and which changes are announced), ``repository/`` (every
Cypher query, the schema, the Neo4j outbox), ``service/outbox_relay.py`` (outbox to RabbitMQ),
``events/handlers.py`` (user.registered / user.updated / user.deleted), ``app.py`` (wiring:
clients, the relay and the consumer), ``__main__.py`` (``serve | worker | migrate``).
"""
