"""Account mail: what each event sends, and the at-most-once rule around the SMTP call."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from common.failures import PermanentError, TransientError, is_transient
from common.logging import get_logger
from email_service.repository.store import MailStore
from email_service.service.compose import Composer, Mail
from email_service.service.smtp import SmtpSender

__all__ = ["PASSWORD_RESET", "VERIFY_EMAIL", "Mailer", "TokenMail"]

log = get_logger(__name__)


@dataclass(frozen=True)
class TokenMail:
    """A mail carrying a one-time token: the link's path, the subject, the template."""

    path: str
    subject: str
    template: str


VERIFY_EMAIL = TokenMail("/api/v1/auth/verify-email", "Verify your email address", "verify_email")
PASSWORD_RESET = TokenMail(
    "/api/v1/auth/password-reset/confirm", "Reset your password", "password_reset"
)


@dataclass
class Mailer:
    store: MailStore
    composer: Composer
    smtp: SmtpSender
    public_base_url: str
    # How long recording a sent mail is retried in-process before the event is given up.
    record_retry_s: float = 60.0

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

    async def token_mail(
        self, kind: TokenMail, event_id: str, *, user_id: str, email: str, username: str, token: str
    ) -> None:
        """The mail of a one-time token: its link leads to ``kind.path``."""
        await self._send_once(
            user_id,
            Mail(
                event_id=event_id,
                to=email,
                subject=kind.subject,
                template=kind.template,
                context={"username": username, "link": self._link(kind.path, token=token)},
            ),
        )

    async def forget(self, user_id: str) -> None:
        await self.store.forget_user(user_id)
        log.info("email_user_forgotten", user_id=user_id)

    async def _send_once(self, user_id: str, mail: Mail) -> None:
        """Send unless this event's mail already went out.

        The sent-log is written right after SMTP accepts the message. If the store fails at
        that moment, writing it is retried here (the claim is kept meanwhile) for
        ``record_retry_s``; after that the event is dead-lettered, never retried, because a
        retry would send the mail again. The only duplicate left is a crash of this process
        between SMTP's answer and the sent-log (the claim then expires after
        ``send_lock_ttl_s`` and the redelivery sends again); the Message-ID is the event's, so
        even that one is recognisable downstream (docs/operations.md).
        """
        if await self.store.was_sent(mail.event_id):
            log.info("email_duplicate_skipped", template=mail.template)
            return
        if await self.store.is_deleted(user_id):
            log.info("email_dropped_deleted_user", template=mail.template, user_id=user_id)
            return
        if not await self.store.claim(mail.event_id):
            # Another worker is sending this very event (a duplicate delivery): look again later.
            raise TransientError("event is being sent by another worker")
        try:
            await self.smtp.send(self.composer.compose(mail))
        except BaseException:
            await self.store.release(mail.event_id)
            raise
        await self._record_sent(mail)
        log.info("email_sent", template=mail.template, user_id=user_id)

    async def _record_sent(self, mail: Mail) -> None:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.record_retry_s),
                wait=wait_exponential_jitter(initial=0.1, max=2.0),
                retry=retry_if_exception(is_transient),
                reraise=True,
            ):
                with attempt:
                    await self.store.mark_sent(mail.event_id)
        except Exception as exc:
            # SMTP has the mail: retrying the event would send it twice. The claim is left
            # to expire, and the dead letter tells an operator the mail went out unrecorded.
            log.error("email_sent_not_recorded", template=mail.template, error=type(exc).__name__)
            raise PermanentError("mail sent, but recording it failed; not retried") from exc
