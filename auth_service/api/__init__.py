"""HTTP endpoints of auth_service: they translate HTTP to service calls and back."""
