"""Account mail: what each event sends, and the at-most-once rule around the SMTP call."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from common.logging import get_logger
from common.messaging import TransientError
from email_service.repository.store import MailStore
from email_service.service.compose import Composer, Mail
from email_service.service.smtp import SmtpSender

__all__ = ["Mailer"]

log = get_logger(__name__)


@dataclass
class Mailer:
    store: MailStore
    composer: Composer
    smtp: SmtpSender
    public_base_url: str

    def _link(self, path: str, **query: str) -> str:
        base = self.public_base_url.rstrip("/")
        return f"{base}{path}?{urlencode(query)}" if query else f"{base}{path}"

    async def welcome(self, event_id: str, *, user_id: str, email: str, display_name: str) -> None:
        await self._send_once(
            user_id,
            Mail(
                event_id=event_id,
                to=email,
                subject="Welcome to Murmur",
                template="welcome",
                context={"display_name": display_name, "app_url": self._link("/")},
            ),
        )

    async def verification(
        self, event_id: str, *, user_id: str, email: str, username: str, token: str
    ) -> None:
        link = self._link("/api/v1/auth/verify-email", token=token)
        await self._send_once(
            user_id,
            Mail(
                event_id=event_id,
                to=email,
                subject="Verify your email address",
                template="verify_email",
                context={"username": username, "link": link},
            ),
        )

    async def password_reset(
        self, event_id: str, *, user_id: str, email: str, username: str, token: str
    ) -> None:
        link = self._link("/api/v1/auth/password-reset/confirm", token=token)
        await self._send_once(
            user_id,
            Mail(
                event_id=event_id,
                to=email,
                subject="Reset your password",
                template="password_reset",
                context={"username": username, "link": link},
            ),
        )

    async def forget(self, user_id: str) -> None:
        await self.store.forget_user(user_id)
        log.info("email.user_forgotten", user_id=user_id)

    async def _send_once(self, user_id: str, mail: Mail) -> None:
        """Send unless this event's mail already went out.

        The sent-log is written right after SMTP accepts the message, so the only duplicate
        left is a crash between the two; the Message-ID is the event's, so even that one is
        recognisable downstream.
        """
        if await self.store.was_sent(mail.event_id):
            log.info("email.duplicate_skipped", template=mail.template)
            return
        if await self.store.is_deleted(user_id):
            log.info("email.dropped_deleted_user", template=mail.template, user_id=user_id)
            return
        if not await self.store.claim(mail.event_id):
            # Another worker is sending this very event (a duplicate delivery): look again later.
            raise TransientError("event is being sent by another worker")
        try:
            await self.smtp.send(self.composer.compose(mail))
        except BaseException:
            await self.store.release(mail.event_id)
            raise
        await self.store.mark_sent(mail.event_id)
        log.info("email.sent", template=mail.template, user_id=user_id)
