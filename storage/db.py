"""Opening the database: pragmas, migrations, and immediate transactions.

Connections run in autocommit mode; every multi-statement write goes through
`transaction(db)`, which takes the write lock up front (BEGIN IMMEDIATE) so two writers
never deadlock upgrading a read lock.

Writers in different processes (the bot, several workers) first queue on an advisory file
lock beside the database. SQLite's own busy handler polls with growing sleeps (1, 2, 5 ... 100 ms),
so under contention a waiter could sleep long after the lock came free; the kernel wakes a
flock waiter as soon as the holder lets go. A process that dies releases its flock with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import logging
import os
import sqlite3
import time
import weakref
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
    _write_locks[db] = os.open(f"{path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
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
        os.close(_write_locks.pop(db))
        await db.close()


# One connection is shared by every task of a process (the bot's cogs, the worker's heartbeat):
# their transactions take turns, or one's BEGIN would land inside another's.
_locks: weakref.WeakKeyDictionary[aiosqlite.Connection, asyncio.Lock] = weakref.WeakKeyDictionary()
_write_locks: weakref.WeakKeyDictionary[aiosqlite.Connection, int] = weakref.WeakKeyDictionary()
# The connections the running task holds a transaction on: a transaction opened inside another on
# the same connection joins it, so storage functions compose into one atomic change (the lifecycle's).
_open: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("dreambot_open_transactions",
                                                                       default=frozenset())


def in_transaction(db: aiosqlite.Connection) -> bool:
    """Whether the running task already holds a transaction on `db`."""
    return id(db) in _open.get()


@contextlib.asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception; one at a time per connection.

    Opened while the same task already holds one on `db`, it joins that one: its statements
    commit or roll back with the outermost transaction.
    """
    if in_transaction(db):
        yield db
        return
    lock = _locks.setdefault(db, asyncio.Lock())
    async with lock, _process_turn(_write_locks.get(db)):
        await db.execute("BEGIN IMMEDIATE")
        mark = _open.set(_open.get() | {id(db)})
        try:
            yield db
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        else:
            await db.execute("COMMIT")
        finally:
            _open.reset(mark)


@contextlib.asynccontextmanager
async def _process_turn(fd: int | None) -> AsyncIterator[None]:
    """Hold the cross-process writer flock (when the connection has one) for the transaction."""
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the usual case: free, no thread hop
    except BlockingIOError:
        waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread will still get the lock: hand it back as soon as it does.
            waiting.add_done_callback(lambda f: f.exception() or fcntl.flock(fd, fcntl.LOCK_UN))
            raise
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class _Group:
    """Statements waiting for the next shared commit on one connection."""

    def __init__(self) -> None:
        self.waiting: list[tuple[str, tuple, asyncio.Future]] = []
        self.flusher: asyncio.Task | None = None


_groups: weakref.WeakKeyDictionary[aiosqlite.Connection, _Group] = weakref.WeakKeyDictionary()


async def fetch_grouped(db: aiosqlite.Connection, query: str, params=()) -> list[aiosqlite.Row]:
    """Run one self-contained write statement under group commit and return its rows.

    Statements that arrive while a commit is in progress share the next transaction, so
    concurrent callers pay for one fsync between them; each call returns only after its
    transaction is durable. A failing statement fails alone (SQLite undoes just that
    statement); a failed commit fails the whole batch.
    """
    if in_transaction(db):  # part of a larger change: it commits with that one
        return await fetch_all(db, query, params)
    group = _groups.setdefault(db, _Group())
    done = asyncio.get_running_loop().create_future()
    group.waiting.append((query, tuple(params), done))
    if group.flusher is None or group.flusher.done():
        # A fresh context: the flusher must never believe it is inside its creator's transaction.
        group.flusher = asyncio.create_task(_flush(db, group), context=contextvars.Context())
    return await done


async def _flush(db: aiosqlite.Connection, group: _Group) -> None:
    while group.waiting:
        batch, group.waiting = group.waiting, []
        results = []
        try:
            async with transaction(db):
                for query, params, fut in batch:
                    try:
                        results.append((fut, list(await db.execute_fetchall(query, params)), None))
                    except sqlite3.Error as exc:
                        results.append((fut, None, exc))
        except BaseException as exc:  # the commit itself failed: nobody's statement is durable
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            continue
        for fut, rows, exc in results:
            if fut.done():  # the caller gave up waiting
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(rows)


async def fetch_one(db: aiosqlite.Connection, query: str, params=()) -> aiosqlite.Row | None:
    """First row of a query, in one trip to the connection's thread."""
    rows = await db.execute_fetchall(query, params)
    return rows[0] if rows else None


async def fetch_all(db: aiosqlite.Connection, query: str, params=()) -> list[aiosqlite.Row]:
    return list(await db.execute_fetchall(query, params))
