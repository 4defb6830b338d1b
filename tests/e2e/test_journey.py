"""Two people use Murmur through the gateway only, from registration to account deletion."""

from __future__ import annotations

import httpx

from deploy.platform.runner import Platform
from tests.e2e.journey import read_mail_from, two_people_journey
from tests.support.mailpit import Mailpit


async def test_two_people_journey(
    gateway: httpx.AsyncClient, platform: Platform, inbox: Mailpit
) -> None:
    await two_people_journey(gateway, read_mail_from(inbox), platform.gateway_url)
