"""email_service: sends account mail (welcome, verification, password reset) from events."""
