"""The fan-out-on-read data set: users, follows and posts with content, made in PostgreSQL.

Generated server-side (``generate_series``; nothing travels over the wire) into a template
database named after its size, in chunks that each commit with a progress row, so an
interrupted generation resumes where it stopped. A finished template is marked
``IS_TEMPLATE``; each run clones it (``CREATE DATABASE ... TEMPLATE``, a file copy) and adds
its own readers, so a rerun costs the copy, not the generation.

Layout (what a fan-out-on-read design would have): ``users(id, username, display_name)``,
``follows(follower, followee)`` keyed by the follower, ``posts(id, author_id, content,
created_at)`` with an index on ``(author_id, created_at DESC)``. Posts are spread evenly over
the authors (10 million over 100,000: 100 each) and over the last 30 days; contents are about
80 characters, like the workload's posts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

__all__ = ["PullDataset", "sql_latencies", "user_id_sql"]

_CHUNK = 1_000_000
VERSION = 1


def user_id_sql(expr: str) -> str:
    """The SQL of the generated user id for the integer ``expr`` (deterministic)."""
    return f"md5('u' || ({expr})::text)::uuid"


@dataclass(frozen=True)
class PullDataset:
    """One generated data set on a PostgreSQL server reachable at ``admin_dsn``."""

    admin_dsn: str  # a DSN of the server's maintenance database (``postgres``)
    users: int = 100_000
    posts: int = 10_000_000
    follows_per_user: int = 10

    @property
    def template(self) -> str:
        return f"pull_v{VERSION}_u{self.users}_p{self.posts}_f{self.follows_per_user}"

    def dsn(self, database: str) -> str:
        return self.admin_dsn.rsplit("/", 1)[0] + "/" + database

    async def ensure(self, log: Callable[[str], None] = print) -> dict[str, float]:
        """Generate (or finish generating) the template unless it is complete; timings in s."""
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            row = await admin.fetchrow(
                "SELECT datistemplate FROM pg_database WHERE datname = $1", self.template
            )
            if row is not None and row["datistemplate"]:
                log(f"pull data set {self.template}: cached")
                return {"cached": 1.0}
            if row is None:
                await admin.execute(f'CREATE DATABASE "{self.template}"')
        finally:
            await admin.close()
        timings: dict[str, float] = {"cached": 0.0}
        conn = await asyncpg.connect(self.dsn(self.template))
        try:
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS progress (step text PRIMARY KEY);
                CREATE TABLE IF NOT EXISTS users (
                    id uuid PRIMARY KEY, username text NOT NULL, display_name text NOT NULL);
                CREATE TABLE IF NOT EXISTS follows (
                    follower uuid NOT NULL, followee uuid NOT NULL,
                    PRIMARY KEY (follower, followee));
                CREATE TABLE IF NOT EXISTS posts (
                    id uuid NOT NULL, author_id uuid NOT NULL, content text NOT NULL,
                    created_at timestamptz NOT NULL);
                """
            )
            done = {r["step"] for r in await conn.fetch("SELECT step FROM progress")}
            steps: list[tuple[str, str]] = [
                (
                    "users",
                    f"""INSERT INTO users
                        SELECT {user_id_sql("i")}, 'pu' || i, 'Pull user ' || i
                        FROM generate_series(0, {self.users - 1}) AS i""",
                ),
                (
                    "follows",
                    f"""INSERT INTO follows
                        SELECT {user_id_sql("i")},
                               {user_id_sql(f"(i * 7919 + k * 104729) % {self.users}")}
                        FROM generate_series(0, {self.users - 1}) AS i,
                             generate_series(1, {self.follows_per_user}) AS k
                        WHERE (i * 7919 + k * 104729) % {self.users} <> i
                        ON CONFLICT DO NOTHING""",
                ),
            ]
            for start in range(0, self.posts, _CHUNK):
                end = min(start + _CHUNK, self.posts) - 1
                steps.append(
                    (
                        f"posts {start}",
                        f"""INSERT INTO posts
                            SELECT md5('p' || i::text)::uuid,
                                   {user_id_sql(f"i % {self.users}")},
                                   'post ' || i || ' ' || md5(i::text) || ' #pull '
                                       || left(md5((i * 7)::text), 12),
                                   now() - (hashint8(i::int8)::float8 / 4294967296.0 + 0.5)
                                       * interval '30 days'
                            FROM generate_series({start}, {end}) AS i""",
                    )
                )
            steps += [
                (
                    "index",
                    "CREATE INDEX IF NOT EXISTS posts_author_time "
                    "ON posts (author_id, created_at DESC)",
                ),
                ("analyze", "VACUUM ANALYZE"),
            ]
            for step, sql in steps:
                if step in done:
                    continue
                t0 = time.monotonic()
                if step == "analyze":
                    await conn.execute(sql)  # VACUUM cannot run in a transaction
                    await conn.execute("INSERT INTO progress VALUES ($1)", step)
                else:
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute("INSERT INTO progress VALUES ($1)", step)
                timings[step] = time.monotonic() - t0
                log(f"pull data set {self.template}: {step} in {timings[step]:.1f}s")
        finally:
            await conn.close()
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'ALTER DATABASE "{self.template}" IS_TEMPLATE true')
        finally:
            await admin.close()
        return timings

    async def clone(self, database: str) -> float:
        """A fresh copy of the template as ``database``; seconds it took."""
        t0 = time.monotonic()
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.execute(
                f'CREATE DATABASE "{database}" TEMPLATE "{self.template}" STRATEGY FILE_COPY'
            )
        finally:
            await admin.close()
        return time.monotonic() - t0

    async def add_reader(self, database: str, reader_id: str, follows: int, *, seed: int) -> None:
        """``reader_id`` (a platform account) following ``follows`` generated users."""
        if follows > self.users:
            raise ValueError(f"only {self.users} users to follow")
        conn = await asyncpg.connect(self.dsn(database))
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO users VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    reader_id,
                    f"reader{follows}",
                    f"Reader following {follows}",
                )
                # Distinct followees: k * a prime coprime with the user count, from an offset.
                await conn.execute(
                    f"""INSERT INTO follows
                        SELECT $1::uuid, {user_id_sql(f"($2 + k * 7919) % {self.users}")}
                        FROM generate_series(0, $3 - 1) AS k
                        ON CONFLICT DO NOTHING""",
                    reader_id,
                    seed,
                    follows,
                )
        finally:
            await conn.close()

    async def sizes(self, database: str) -> dict[str, int]:
        conn = await asyncpg.connect(self.dsn(database))
        try:
            counts = {
                t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))
                for t in ("users", "follows", "posts")
            }
            size = await conn.fetchval("SELECT pg_database_size($1)", database)
            counts["database_bytes"] = int(size)
            return counts
        finally:
            await conn.close()


async def sql_latencies(dsn: str, query: str, args: Sequence[object], reps: int) -> list[float]:
    """The query alone, prepared, run ``reps`` times on one connection (seconds each)."""
    conn = await asyncpg.connect(dsn)
    try:
        stmt = await conn.prepare(query)
        await stmt.fetch(*args)
        out: list[float] = []
        for _ in range(reps):
            t0 = time.perf_counter()
            await stmt.fetch(*args)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        await conn.close()
