"""The backing services of a whole platform, from the suite's server fixtures."""

from __future__ import annotations

from typing import Any

from deploy.platform.runner import Backing


async def backing_from_fixtures(
    prefix: str,
    make_database: Any,
    redis_server: Any,
    make_vhost: Any,
    neo4j: Any,
    mail: Any,
) -> Backing:
    """Fresh databases and a fresh vhost named after prefix; the session's Redis, Neo4j, mail."""
    return Backing(
        database_urls={
            "auth": await make_database(f"{prefix}_auth"),
            "post": await make_database(f"{prefix}_post"),
        },
        redis_url=f"redis://127.0.0.1:{redis_server.port}",
        amqp_url=await make_vhost(prefix),
        neo4j_uri=neo4j.bolt_uri,
        smtp_host=mail.smtp_host,
        smtp_port=mail.smtp_port,
    )
