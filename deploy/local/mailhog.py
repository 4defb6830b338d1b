"""MailHog (API-compatible stand-in, see mailhog_compat) catching outgoing mail."""

from __future__ import annotations

import os
import smtplib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from deploy.local import install
from deploy.local.process import HOST, ManagedServer


class MailHogServer(ManagedServer):
    name = "mailhog"

    def __init__(
        self,
        state_dir: Path,
        smtp_port: int = 1025,
        api_port: int = 8025,
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(state_dir, log_dir)
        self.smtp_host = HOST
        self.smtp_port = smtp_port
        self.api_port = api_port

    @property
    def ports(self) -> dict[str, int]:
        return {"smtp": self.smtp_port, "api/ui": self.api_port}

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def environment(self) -> Mapping[str, str]:
        # The catcher runs from the state directory; make this checkout importable there.
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path}

    def prepare(self) -> None:
        install.ensure_mailhog()

    def command(self) -> Sequence[str]:
        api = f"{HOST}:{self.api_port}"
        return [
            sys.executable,
            "-m",
            "deploy.local.mailhog_compat",
            "-smtp-bind-addr",
            f"{HOST}:{self.smtp_port}",
            "-api-bind-addr",
            api,
            "-ui-bind-addr",
            api,
        ]

    def check_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.api_url}/api/v2/messages", timeout=2)
            if response.status_code != 200 or "items" not in response.json():
                return False
            with smtplib.SMTP(HOST, self.smtp_port, timeout=2) as smtp:
                code, _ = smtp.noop()
                return code == 250
        except (httpx.HTTPError, OSError, ValueError, smtplib.SMTPException):
            return False
