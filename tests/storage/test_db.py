"""Connections and transactions: writers in several processes take turns and never leak the lock."""

from __future__ import annotations

import asyncio

from storage import db as database


async def test_cancelled_writer_does_not_keep_the_process_lock(tmp_path):
    """A transaction cancelled while waiting for another process's write turn leaves the lock free."""
    path = tmp_path / "a.sqlite3"
    async with database.connect(path) as first, database.connect(path) as second:
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold():
            async with database.transaction(first):
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()

        async def write():
            async with database.transaction(second):
                await second.execute("INSERT INTO usage (at, user_id, kind) VALUES (0, 1, 'train')")

        waiter = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        waiter.cancel()
        release.set()
        await holder
        await asyncio.wait_for(write(), timeout=5)  # neither connection holds the lock any more
        async with database.transaction(first):
            (n,) = await database.fetch_one(first, "SELECT count(*) FROM usage")
        assert n == 1
