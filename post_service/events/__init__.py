"""Events of post_service: what it publishes (through the outbox) and what it consumes."""

# The producer of every event post_service writes into its outbox (common.outbox.emit).
PRODUCER = "post"
