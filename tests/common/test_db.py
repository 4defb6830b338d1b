"""common.db engines keep bound values out of errors (and so out of every log line)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from common.db import create_engine


async def test_a_failed_statement_does_not_carry_its_parameters(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    engine = create_engine(await make_database("hideparams"))
    secret_email = "ada.secret@example.com"
    secret_hash = "$2b$12$abcdefghijklmnopqrstuvCwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE u (email text PRIMARY KEY, hash text)"))
        insert = text("INSERT INTO u (email, hash) VALUES (:email, :hash)")
        async with engine.begin() as conn:
            await conn.execute(insert, {"email": secret_email, "hash": secret_hash})
        with pytest.raises(IntegrityError) as failed:
            async with engine.begin() as conn:
                await conn.execute(insert, {"email": secret_email, "hash": secret_hash})
    finally:
        await engine.dispose()
    message = str(failed.value)
    assert "parameters hidden" in message
    assert secret_hash not in message
    # Left: PostgreSQL's own DETAIL line names the duplicate key (docs/api-auth.md).
    assert message.count(secret_email) <= 1
