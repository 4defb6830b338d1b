"""Sending over SMTP, with failures sorted into "retry later" and "never works"."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from common.failures import PermanentError, TransientError

__all__ = ["SmtpSender"]


class SmtpSender:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._use_tls = use_tls
        self._start_tls = start_tls
        self._timeout_s = timeout_s

    async def send(self, message: EmailMessage) -> None:
        """Send one message; raises TransientError (retry) or PermanentError (dead-letter).

        Error texts name the SMTP failure only: never the message, which holds tokens.
        """
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._use_tls,
                start_tls=self._start_tls,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            if codes and all(code >= 500 for code in codes):
                raise PermanentError(f"SMTP refused the recipient ({codes})") from None
            raise TransientError(f"SMTP deferred the recipient ({codes})") from None
        except aiosmtplib.SMTPDataError as exc:
            if exc.code >= 500:
                raise PermanentError(f"SMTP rejected the message ({exc.code})") from None
            raise TransientError(f"SMTP deferred the message ({exc.code})") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Includes refused connections and authentication or sender problems: those are
            # configuration or availability issues that an operator fixes, so keep retrying.
            raise TransientError(f"SMTP unavailable ({type(exc).__name__})") from None
