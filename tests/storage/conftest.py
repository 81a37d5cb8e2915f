"""Storage, queue and lifecycle tests run on both backends: a SQLite file, and a real PostgreSQL server."""

from __future__ import annotations

import pytest

from storage import db as database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_location(request, tmp_path):
    """What `storage.db.connect` opens for this test: a fresh SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "test.sqlite3"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def db(db_location):
    async with database.connect(db_location) as conn:
        yield conn
