"""Migrations: from empty, again as a no-op, and from every earlier version with data kept."""

from __future__ import annotations

import pytest

from storage import db as database
from storage import migrate

CORE = ("subjects", "photos", "consents", "jobs", "artifacts", "outbox", "audit_log", "usage")


async def test_fresh_database_gets_every_migration(db_location):
    """Opening an empty database applies all migrations and creates the core tables."""
    async with database.connect(db_location) as db:
        assert await migrate.applied(db) == [name for name, _ in migrate.available()]
        for table in CORE:
            assert await database.fetch_all(db, f"SELECT * FROM {table}") == []


async def test_second_run_is_a_no_op(db_location):
    """Migrating an up-to-date database applies nothing."""
    async with database.connect(db_location) as db:
        assert await migrate.migrate(db) == []


@pytest.mark.parametrize("start", [name for name, _ in migrate.available()])
async def test_upgrade_from_each_version_keeps_data(db_location, start):
    """A database at any earlier version upgrades to the latest and keeps its rows; foreign keys still
    hold across a migration that rebuilds a table (a subject's photos go with it), and new rows get
    fresh ids."""
    async with database.connect(db_location, run_migrations=False) as db:
        await migrate.migrate(db, upto=start)
        await db.execute("INSERT INTO jobs (kind, user_id, max_attempts, run_after, created_at, updated_at) "
                         "VALUES ('train', 5, 3, 0, 0, 0)")
        await db.execute("INSERT INTO subjects (owner_id, name, token, class_noun, created_at, updated_at) "
                         "VALUES (5, 'rex', 'sks', 'dog', 0, 0)")
        await db.execute("INSERT INTO photos (subject_id, position, sha256, path, width, height, created_at) "
                         "VALUES (1, 1, 'ab', 'p.jpg', 512, 512, 0)")
    async with database.connect(db_location) as db:
        assert await migrate.applied(db) == [name for name, _ in migrate.available()]
        (count,) = await database.fetch_one(db, "SELECT count(*) FROM jobs WHERE user_id = 5")
        assert count == 1
        new = await database.fetch_one(
            db, "INSERT INTO subjects (owner_id, name, token, class_noun, created_at, updated_at) "
                "VALUES (6, 'tom', 'xyz', 'cat', 0, 0) RETURNING id")
        assert new["id"] == 2
        with pytest.raises(database.IntegrityError):
            await db.execute("INSERT INTO photos (subject_id, position, sha256, path, width, height, created_at) "
                             "VALUES (99, 1, 'cd', 'q.jpg', 512, 512, 0)")
        await db.execute("DELETE FROM subjects WHERE id = 1")
        assert await database.fetch_all(db, "SELECT * FROM photos") == []


@pytest.mark.parametrize("db_location", ["sqlite"], indirect=True)
async def test_pragmas_are_set_on_connect(db):
    """WAL, foreign keys and a busy timeout are on for every connection."""
    assert (await database.fetch_one(db, "PRAGMA journal_mode"))[0] == "wal"
    assert (await database.fetch_one(db, "PRAGMA foreign_keys"))[0] == 1
    assert (await database.fetch_one(db, "PRAGMA busy_timeout"))[0] == 5000

