"""``run_http``: how every service runs its app under uvicorn."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from common.settings import ServiceSettings

__all__ = ["KEEP_ALIVE_TIMEOUT_S", "run_http"]

# Idle keep-alive connections live this long. The gateway's upstream keepalive_timeout (and
# an ingress controller's, whose default is 60 s) must stay below it, so the proxy is always the
# side that closes an idle connection; otherwise it can send a request on a connection uvicorn
# is closing (uvicorn's default is 5 s).
KEEP_ALIVE_TIMEOUT_S = 75


def run_http(app: FastAPI, *, host: str, port: int, trusted_proxies: str | None = None) -> None:
    """Serve ``app``; X-Forwarded-For/-Proto are believed only from the trusted proxies."""
    settings: ServiceSettings = app.state.settings
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=trusted_proxies or settings.trusted_proxies,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        access_log=False,  # common.app writes one access-log line per request
        log_config=None,  # keep common's JSON logging
    )
