"""The benchmark platform's environment."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from auth_service.settings import AuthSettings
from bench.backing import platform_env
from network_service.settings import NetworkSettings
from post_service.settings import PostSettings


def test_every_rate_limit_is_off_in_the_benchmark() -> None:
    # The load comes from one address: any limit left on would measure the limiter.
    env = platform_env(hybrid_threshold=1000, fanout_batch=500)
    classes: list[tuple[str, type[BaseSettings]]] = [
        ("AUTH_", AuthSettings),
        ("POST_", PostSettings),
        ("NETWORK_", NetworkSettings),
    ]
    for prefix, settings in classes:
        for field in settings.model_fields:
            if field.startswith("rate_"):
                assert env.get(prefix + field.upper()) == "", prefix + field.upper()
