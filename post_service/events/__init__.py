"""Events of post_service: what it publishes (through the outbox) and what it consumes."""
