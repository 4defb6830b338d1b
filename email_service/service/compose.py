"""Rendering mail from templates into multipart text + HTML messages."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from common.time import utcnow

__all__ = ["Composer", "Mail"]


@dataclass(frozen=True)
class Mail:
    """One mail to send; ``template`` names ``templates/<template>.{txt,html}``."""

    event_id: str
    to: str
    subject: str
    template: str
    context: dict[str, Any]


class Composer:
    def __init__(self, *, sender: str, product_name: str, message_id_domain: str) -> None:
        self._sender = sender
        self._product_name = product_name
        self._domain = message_id_domain
        self._env = Environment(
            loader=PackageLoader("email_service", "templates"),
            # HTML escapes every value; plain text must not (it would show &amp; to readers).
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def message_id(self, event_id: str) -> str:
        # Derived from the event: a resend after a crash carries the same Message-ID, so mail
        # clients and relays can drop the duplicate.
        return f"<{event_id}@{self._domain}>"

    def compose(self, mail: Mail) -> EmailMessage:
        context = {"product_name": self._product_name, **mail.context}
        text = self._env.get_template(f"{mail.template}.txt").render(context)
        html = self._env.get_template(f"{mail.template}.html").render(context)
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Message-ID"] = self.message_id(mail.event_id)
        message["Date"] = format_datetime(utcnow())
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message
