"""Mailpit, the development inbox: every mail the services send is caught here, none leaves.

Mailpit is MailHog's maintained successor, on MailHog's ports (SMTP 1025, web UI and API 8025).
Its API: https://mailpit.axllent.org/docs/api-v1/
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from deploy.local import install
from deploy.local.process import HOST, ManagedServer


class MailpitServer(ManagedServer):
    """SMTP and the web UI/API on 127.0.0.1; the mailbox is a SQLite file in `state_dir`."""

    name = "mailpit"

    def __init__(
        self,
        state_dir: Path,
        smtp_port: int = 1025,
        http_port: int = 8025,
        log_dir: Path | None = None,
        *,
        version: str = install.MAILPIT_VERSION,
    ) -> None:
        super().__init__(state_dir, log_dir)
        self.smtp_host = HOST
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.version = version
        self._binary: Path | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {"smtp": self.smtp_port, "ui/api": self.http_port}

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def database(self) -> Path:
        return self.state_dir / "mailpit.db"

    def environment(self) -> Mapping[str, str]:
        # Mailpit reads MP_* variables as settings: only the flags below configure it.
        return {key: value for key, value in os.environ.items() if not key.startswith("MP_")}

    def prepare(self) -> None:
        self._binary = install.ensure_mailpit(self.version)

    def command(self) -> Sequence[str]:
        if self._binary is None:
            self._binary = install.ensure_mailpit(self.version)
        return [
            str(self._binary),
            "--smtp",
            f"{HOST}:{self.smtp_port}",
            "--listen",
            f"{HOST}:{self.http_port}",
            # Kept across restarts (without it Mailpit uses a file in /tmp, deleted on exit).
            "--database",
            str(self.database),
            # Nothing reaches outside the machine: no release check against GitHub, no reverse
            # DNS lookup of each SMTP client.
            "--disable-version-check",
            "--smtp-disable-rdns",
        ]

    def check_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.api_url}/api/v1/messages", timeout=2)
            if response.status_code != 200 or "messages" not in response.json():
                return False
            with smtplib.SMTP(HOST, self.smtp_port, timeout=2) as smtp:
                code, _ = smtp.noop()
                return code == 250
        except (httpx.HTTPError, OSError, ValueError, smtplib.SMTPException):
            return False
