"""Migrations: from empty, again as a no-op, and from every earlier version with data kept."""

from __future__ import annotations

import pytest

from storage import db as database
from storage import migrate


async def _tables(db) -> set[str]:
    rows = await database.fetch_all(db, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r["name"] for r in rows}


async def test_fresh_database_gets_every_migration(tmp_path):
    """Opening an empty file applies all migrations and creates the core tables."""
    async with database.connect(tmp_path / "a.sqlite3") as db:
        assert await migrate.applied(db) == [name for name, _ in migrate.available()]
        assert {"subjects", "photos", "consents", "jobs", "artifacts", "outbox", "audit_log", "usage"} <= \
            await _tables(db)


async def test_second_run_is_a_no_op(tmp_path):
    """Migrating an up-to-date database applies nothing."""
    async with database.connect(tmp_path / "a.sqlite3") as db:
        assert await migrate.migrate(db) == []


@pytest.mark.parametrize("start", [name for name, _ in migrate.available()])
async def test_upgrade_from_each_version_keeps_data(tmp_path, start):
    """A database at any earlier version upgrades to the latest and keeps its jobs."""
    path = tmp_path / "old.sqlite3"
    async with database.connect(path, run_migrations=False) as db:
        await migrate.migrate(db, upto=start)
        await db.execute("INSERT INTO jobs (kind, user_id, max_attempts, run_after, created_at, updated_at) "
                         "VALUES ('train', 5, 3, 0, 0, 0)")
    async with database.connect(path) as db:
        assert await migrate.applied(db) == [name for name, _ in migrate.available()]
        (count,) = await database.fetch_one(db, "SELECT count(*) FROM jobs WHERE user_id = 5")
        assert count == 1


async def test_pragmas_are_set_on_connect(db):
    """WAL, foreign keys and a busy timeout are on for every connection."""
    assert (await database.fetch_one(db, "PRAGMA journal_mode"))[0] == "wal"
    assert (await database.fetch_one(db, "PRAGMA foreign_keys"))[0] == 1
    assert (await database.fetch_one(db, "PRAGMA busy_timeout"))[0] == 5000

