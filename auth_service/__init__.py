"""auth_service: identity, credentials, access and refresh tokens (owns the users database)."""
