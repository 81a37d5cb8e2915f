"""Fixtures shared by every test: offline hub, a fresh SQLite file per test, the default config."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from storage import db as database  # noqa: E402
from storage.config import Config, QueueConfig  # noqa: E402

pytest_plugins = ["tests.pg_server", "tests.s3_server"]


@pytest.fixture
def cfg(tmp_path) -> Config:
    """The default config with its data directory inside the test's tmp_path."""
    from dataclasses import replace
    base = Config()
    return replace(base, storage=replace(base.storage, data_dir=tmp_path / "data"))


@pytest.fixture
def queue_cfg() -> QueueConfig:
    return QueueConfig(backoff_base_seconds=1.0, backoff_max_seconds=8.0)


@pytest.fixture
async def db(tmp_path):
    async with database.connect(tmp_path / "test.sqlite3") as conn:
        yield conn
