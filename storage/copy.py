"""`dreambot db copy --to URL`: move an installation's database to another backend, all or nothing.

The target is migrated to the same schema first and must hold no rows. Every table is copied with
its ids, parents before children (foreign keys hold throughout), inside one transaction on the
target: a failure leaves it as empty as it was. The source is read inside its own write
transaction, so nothing changes under the copy (stop the bot and workers first all the same).
Identity counters on the target are moved past the copied ids, and the row counts are compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from storage.db import fetch_all, fetch_one, reset_identities, transaction
from storage.errors import DreambotError

BATCH = 500  # rows per INSERT statement


class CopyRefused(DreambotError):
    """The target is not an empty dreambot database, or the copy did not add up."""


@dataclass(frozen=True)
class CopyReport:
    rows: dict[str, int]

    def summary(self) -> str:
        return ", ".join(f"{n} {table}" for table, n in self.rows.items() if n) or "no rows (an empty installation)"


async def tables(db: aiosqlite.Connection) -> list[str]:
    """The application's tables, parents before the tables whose foreign keys point at them."""
    names = [r[0] for r in await fetch_all(
        db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'schema_migrations' ORDER BY name")]
    parents = {n: {r["table"] for r in await fetch_all(db, f'PRAGMA foreign_key_list("{n}")')} - {n}
               for n in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise CopyRefused(f"tables {sorted(set(names) - set(ordered))} refer to each other in a cycle")
        ordered += ready
    return ordered


async def copy(source: aiosqlite.Connection, target, *, progress=print) -> CopyReport:
    """Copy every row of `source` (a SQLite installation) into `target` (an empty, migrated database)."""
    order = await tables(source)
    counts: dict[str, int] = {}
    async with transaction(source), transaction(target):
        for table in order:
            if await fetch_one(target, f'SELECT 1 FROM "{table}" LIMIT 1'):
                raise CopyRefused(f"the target already holds rows in {table}: copy into an empty database "
                                  "(create a new one, or drop and recreate it)")
        for table in order:
            rows = await fetch_all(source, f'SELECT * FROM "{table}"')
            counts[table] = len(rows)
            if not rows:
                continue
            columns = ", ".join(f'"{c}"' for c in rows[0].keys())
            marks = "(" + ", ".join("?" * len(rows[0].keys())) + ")"
            for start in range(0, len(rows), BATCH):
                chunk = rows[start:start + BATCH]
                await target.execute(f'INSERT INTO "{table}" ({columns}) VALUES {", ".join([marks] * len(chunk))}',
                                     [v for row in chunk for v in row])
            progress(f"copied {len(rows)} rows of {table}")
        await reset_identities(target)
        for table in order:
            (copied,) = await fetch_one(target, f'SELECT count(*) FROM "{table}"')
            if copied != counts[table]:
                raise CopyRefused(f"{table}: {counts[table]} rows read but {copied} written; nothing was kept")
    return CopyReport(counts)
