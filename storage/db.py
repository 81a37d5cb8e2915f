"""Opening the database: pragmas, migrations, and immediate transactions.

Connections run in autocommit mode; every multi-statement write goes through
`transaction(db)`, which takes the write lock up front (BEGIN IMMEDIATE) so two writers
never deadlock upgrading a read lock.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite

from storage.migrate import migrate

log = logging.getLogger(__name__)


def now() -> float:
    return time.time()


@contextlib.asynccontextmanager
async def connect(path: str | Path, *, busy_timeout_ms: int = 5000, run_migrations: bool = True
                  ) -> AsyncIterator[aiosqlite.Connection]:
    """Open (creating if needed) the database at `path`, set WAL, foreign keys and a busy timeout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        db.row_factory = aiosqlite.Row
        await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await db.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit of consent or job state survives power loss, not only a crash.
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA foreign_keys = ON")
        if run_migrations:
            await migrate(db)
        yield db
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    else:
        await db.execute("COMMIT")


async def fetch_one(db: aiosqlite.Connection, query: str, params=()) -> aiosqlite.Row | None:
    async with db.execute(query, params) as cur:
        return await cur.fetchone()


async def fetch_all(db: aiosqlite.Connection, query: str, params=()) -> list[aiosqlite.Row]:
    async with db.execute(query, params) as cur:
        return list(await cur.fetchall())
