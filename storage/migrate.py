"""Numbered, append-only SQL migrations applied in order at start-up, each in its own transaction.

Applied names are kept in `schema_migrations`; a file that was applied is never edited,
a change is a new file (see storage/migrations/).
"""

from __future__ import annotations

import logging
import time
from importlib import resources

import aiosqlite

from storage.postgres import PgConnection

log = logging.getLogger(__name__)


def available() -> list[tuple[str, str]]:
    """(name, sql) of every migration shipped, in order."""
    files = resources.files("storage") / "migrations"
    found = sorted((f.name, f.read_text(encoding="utf-8")) for f in files.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), sql) for name, sql in found]


async def applied(db: aiosqlite.Connection) -> list[str]:
    if isinstance(db, PgConnection):
        return await db.applied_migrations()
    await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    async with db.execute("SELECT name FROM schema_migrations ORDER BY name") as cur:
        return [row[0] for row in await cur.fetchall()]


async def migrate(db: aiosqlite.Connection, *, upto: str | None = None) -> list[str]:
    """Apply every pending migration (or those up to and including `upto`); returns the names applied."""
    done = set(await applied(db))
    ran = []
    for name, sql in available():
        if upto is not None and name > upto:
            break
        if name in done:
            continue
        if isinstance(db, PgConnection):  # the same script, in PostgreSQL's dialect (storage/dialect.py)
            if await db.apply_migration(name, sql, time.time()):
                log.info("applied migration %s", name)
                ran.append(name)
            continue
        # executescript commits first, so the transaction is written out in the script itself.
        # Foreign keys are off while a migration runs (SQLite's way to rebuild a table that others
        # reference: a DROP would otherwise cascade), and checked before it commits.
        fk_on = (await (await db.execute("PRAGMA foreign_keys")).fetchone())[0]
        await db.execute("PRAGMA foreign_keys = OFF")
        try:
            await db.executescript(
                "BEGIN IMMEDIATE;\n" + sql
                + f"\nINSERT INTO schema_migrations (name, applied_at) VALUES ('{name}', {time.time()});\n")
            broken = await (await db.execute("PRAGMA foreign_key_check")).fetchall()
            if broken:
                raise RuntimeError(f"migration {name} leaves {len(broken)} rows pointing at nothing, "
                                   f"first in table {broken[0][0]}")
            await db.execute("COMMIT")
        except Exception:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            if name in await applied(db):  # another process applied it first
                continue
            raise
        finally:
            await db.execute(f"PRAGMA foreign_keys = {'ON' if fk_on else 'OFF'}")
        log.info("applied migration %s", name)
        ran.append(name)
    return ran
