"""Shared test helpers (fixtures live in conftest.py files)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import discord


@asynccontextmanager
async def running(
    client: discord.Client, token: str, *, timeout: float = 5.0
) -> AsyncIterator[discord.Client]:
    """Log in, connect in a task, wait for on_ready; close cleanly afterwards."""
    task = ready = None
    try:
        await client.login(token)
        task = asyncio.create_task(client.connect(reconnect=False))
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            raise RuntimeError("the client stopped before it was ready") from task.exception()
        if ready not in done:
            raise TimeoutError(f"the client was not ready within {timeout}s")
        yield client
    finally:
        await client.close()
        pending = [t for t in (task, ready) if t is not None]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
