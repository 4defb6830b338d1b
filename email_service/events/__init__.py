"""Handlers of the events email_service consumes."""
