"""One handler per consumed event type; each parses its payload and asks the mailer."""

from __future__ import annotations

from collections.abc import Mapping

from common.events import (
    EventEnvelope,
    UserDeleted,
    UserPasswordResetRequested,
    UserRegistered,
    UserVerificationRequested,
)
from common.messaging import Handler, PermanentError
from common.sealing import Sealer, SealError
from email_service.service.mailer import Mailer

__all__ = ["build_handlers"]


def build_handlers(mailer: Mailer, sealer: Sealer, *, max_age_s: int) -> Mapping[str, Handler]:
    def unseal(sealed: str) -> tuple[str, str]:
        """The address and token of a token event; a seal we cannot open is permanent."""
        try:
            fields = sealer.open(sealed, max_age_s=max_age_s)
            return fields["email"], fields["token"]
        except (SealError, KeyError):
            raise PermanentError("sealed fields cannot be opened") from None

    async def on_registered(envelope: EventEnvelope) -> None:
        data = UserRegistered.model_validate(envelope.data)
        await mailer.welcome(
            envelope.id, user_id=data.user_id, email=data.email, display_name=data.display_name
        )

    async def on_verification_requested(envelope: EventEnvelope) -> None:
        data = UserVerificationRequested.model_validate(envelope.data)
        email, token = unseal(data.sealed)
        await mailer.verification(
            envelope.id, user_id=data.user_id, email=email, username=data.username, token=token
        )

    async def on_password_reset_requested(envelope: EventEnvelope) -> None:
        data = UserPasswordResetRequested.model_validate(envelope.data)
        email, token = unseal(data.sealed)
        await mailer.password_reset(
            envelope.id, user_id=data.user_id, email=email, username=data.username, token=token
        )

    async def on_deleted(envelope: EventEnvelope) -> None:
        data = UserDeleted.model_validate(envelope.data)
        await mailer.forget(data.user_id)

    return {
        UserRegistered.event_type: on_registered,
        UserVerificationRequested.event_type: on_verification_requested,
        UserPasswordResetRequested.event_type: on_password_reset_requested,
        UserDeleted.event_type: on_deleted,
    }
