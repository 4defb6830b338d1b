"""One handler per consumed event type; each takes the parsed event and asks the mailer."""

from __future__ import annotations

from common.events import (
    EventEnvelope,
    UserDeleted,
    UserPasswordResetRequested,
    UserRegistered,
    UserVerificationRequested,
)
from common.failures import PermanentError
from common.messaging.handlers import EventHandlers
from common.sealing import Sealer, SealError
from email_service.service.mailer import PASSWORD_RESET, VERIFY_EMAIL, Mailer

__all__ = ["build_handlers"]


def build_handlers(mailer: Mailer, sealer: Sealer, *, max_age_s: int) -> EventHandlers:
    handlers = EventHandlers()

    def unseal(sealed: str) -> tuple[str, str]:
        """The address and token of a token event; a seal we cannot open is permanent."""
        try:
            fields = sealer.open(sealed, max_age_s=max_age_s)
            return fields["email"], fields["token"]
        except (SealError, KeyError):
            raise PermanentError("sealed fields cannot be opened") from None

    @handlers.on(UserRegistered)
    async def on_registered(event: UserRegistered, envelope: EventEnvelope) -> None:
        await mailer.welcome(
            envelope.id, user_id=event.user_id, email=event.email, display_name=event.display_name
        )

    token_mails = {
        UserVerificationRequested: VERIFY_EMAIL,
        UserPasswordResetRequested: PASSWORD_RESET,
    }

    @handlers.on(UserVerificationRequested, UserPasswordResetRequested)
    async def on_token_requested(
        event: UserVerificationRequested | UserPasswordResetRequested, envelope: EventEnvelope
    ) -> None:
        email, token = unseal(event.sealed)
        await mailer.token_mail(
            token_mails[type(event)],
            envelope.id,
            user_id=event.user_id,
            email=email,
            username=event.username,
            token=token,
        )

    @handlers.on(UserDeleted)
    async def on_deleted(event: UserDeleted, _envelope: EventEnvelope) -> None:
        await mailer.forget(event.user_id)

    return handlers
