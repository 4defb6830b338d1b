"""Business rules of post_service: who may do what, and which events follow."""
