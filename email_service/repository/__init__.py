"""email_service's own store (Redis): the sent-log and deleted-account markers."""
