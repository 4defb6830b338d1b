"""All SQL of post_service lives here; services call these, never the session directly."""
