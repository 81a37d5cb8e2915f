"""`dreambot db copy --to`: an existing SQLite installation moves to PostgreSQL whole, or not at all."""

from __future__ import annotations

import asyncio

import pytest

from cli.main import main
from storage import db as database
from storage import jobs, lifecycle
from storage.config import QueueConfig
from tests.helpers import consented, trained

TABLES = ("subjects", "photos", "consents", "jobs", "artifacts", "audit_log", "outbox")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMBOT_STORAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DREAMBOT_STORAGE_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


async def _install(data_dir) -> dict[str, list]:
    """A used installation: a trained subject, a queued one, a forgotten user's tombstone."""
    async with database.connect(data_dir / "dreambot.sqlite3") as db:
        await trained(db, data_dir, owner_id=42, guild_id=1, name="rex")
        await consented(db, data_dir, owner_id=43, guild_id=1, review=False, name="tom", queue=QueueConfig())
        await consented(db, data_dir, owner_id=44, guild_id=1, review=False, name="bo", queue=QueueConfig())
        await lifecycle.forget_user(db, user_id=44, data_dir=data_dir)
        return {t: [tuple(r) for r in await database.fetch_all(db, f"SELECT * FROM {t} ORDER BY id")]
                for t in TABLES}


async def _rows(url) -> dict[str, list]:
    async with database.connect(url) as db:
        return {t: [tuple(r) for r in await database.fetch_all(db, f"SELECT * FROM {t} ORDER BY id")]
                for t in TABLES}


def test_copy_moves_every_row_and_the_copy_keeps_working(data_dir, pg_url, capsys):
    """Every row arrives with its id; afterwards the PostgreSQL installation queues new work with fresh ids
    and the consent rules still hold there."""
    before = asyncio.run(_install(data_dir))
    assert main(["db", "copy", "--to", pg_url]) == 0
    assert "copied" in capsys.readouterr().out
    assert asyncio.run(_rows(pg_url)) == before

    async def after():
        async with database.connect(pg_url) as db:
            job = await jobs.enqueue(db, kind="generate", user_id=42, params={}, cfg=QueueConfig())
            assert job.id == max(r[0] for r in before["jobs"]) + 1
            with pytest.raises(database.IntegrityError, match="append-only"):
                await db.execute("DELETE FROM consents WHERE user_id = 42")
    asyncio.run(after())


def test_copy_into_a_used_database_is_refused_and_changes_nothing(data_dir, pg_url, capsys):
    """A target that already holds rows is left as it was, with a message saying what to do."""
    asyncio.run(_install(data_dir))

    async def occupy():
        async with database.connect(pg_url) as db:
            await jobs.enqueue(db, kind="generate", user_id=7, params={}, cfg=QueueConfig())
    asyncio.run(occupy())
    occupied = asyncio.run(_rows(pg_url))
    assert main(["db", "copy", "--to", pg_url]) == 1
    assert "copy into an empty database" in capsys.readouterr().err
    assert asyncio.run(_rows(pg_url)) == occupied


def test_copy_needs_a_postgresql_url(data_dir, capsys):
    """A target that is not a PostgreSQL URL is refused before anything is opened."""
    asyncio.run(_install(data_dir))
    assert main(["db", "copy", "--to", "/tmp/other.sqlite3"]) == 1
    assert "is not a PostgreSQL URL" in capsys.readouterr().err


def test_db_migrate_on_postgresql_applies_then_says_up_to_date(pg_url, data_dir, monkeypatch, capsys):
    """`dreambot db migrate` with storage.database_url set migrates the server's database, once."""
    monkeypatch.setenv("DREAMBOT_STORAGE_DATABASE_URL", pg_url)
    assert main(["db", "migrate"]) == 0
    assert "applied: 0001_init" in capsys.readouterr().out
    assert main(["db", "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert not (data_dir / "dreambot.sqlite3").exists()


def test_an_unreachable_server_is_a_clear_message(data_dir, monkeypatch, capsys):
    """A database_url nobody answers at stops the command with what to check, never the password."""
    monkeypatch.setenv("DREAMBOT_STORAGE_DATABASE_URL", "postgresql://dreambot:hunter2@127.0.0.1:1/dreambot")
    assert main(["db", "migrate"]) == 1
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL at postgresql://dreambot:<redacted>@127.0.0.1:1/dreambot" in err
    assert "hunter2" not in err and "Traceback" not in err
