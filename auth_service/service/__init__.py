"""Business rules of auth_service: accounts, credentials, tokens."""
