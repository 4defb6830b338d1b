"""All SQL of auth_service lives here."""
