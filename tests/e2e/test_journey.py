"""Two people use Murmur through the gateway only, from registration to account deletion."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx

from deploy.platform.runner import Platform
from tests.e2e.journey import mail_to, two_people_journey


async def test_two_people_journey(
    gateway: httpx.AsyncClient, platform: Platform, mailhog: Any
) -> None:
    await two_people_journey(gateway, partial(mail_to, mailhog.api_url), platform.gateway_url)
