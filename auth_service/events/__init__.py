"""auth_service consumes no events; it produces user.* events through its outbox
(see ``service/``), so a state change and its event commit together."""
