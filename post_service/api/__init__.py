"""HTTP endpoints: they translate requests to service calls and results to responses."""
