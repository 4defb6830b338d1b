"""What email_service does: compose account mail and send each at most once."""
