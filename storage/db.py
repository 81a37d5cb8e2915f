"""Opening the database: pragmas, migrations, and immediate transactions, on SQLite or PostgreSQL.

`connect(location)` opens the SQLite file at a path, or the PostgreSQL server a `postgresql://` URL
names (storage/postgres.py); everything else here and in the rest of storage is the same on both.

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
import dataclasses
import fcntl
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import psycopg

from storage.errors import DatabaseUnreachable
from storage.migrate import migrate
from storage.postgres import PgConnection

# What a caller catches, whichever backend raised it.
Error = (sqlite3.Error, psycopg.Error)
IntegrityError = (sqlite3.IntegrityError, psycopg.errors.IntegrityError)
# The database could not be reached or stayed locked: worth waiting and trying again.
OperationalError = (sqlite3.OperationalError, psycopg.OperationalError, DatabaseUnreachable)

log = logging.getLogger(__name__)


def now() -> float:
    return time.time()


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


@contextlib.asynccontextmanager
async def connect(location: str | Path, *, busy_timeout_ms: int = 5000, run_migrations: bool = True
                  ) -> AsyncIterator[aiosqlite.Connection]:
    """Open the database `location` names: a PostgreSQL URL, or a SQLite file (created if needed,
    with WAL, foreign keys and a busy timeout)."""
    if is_url(location):
        db = await PgConnection.open(location)
        try:
            if run_migrations:
                await migrate(db)
            yield db
        finally:
            await db.close()
        return
    path = Path(location)
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
async def transaction(db: aiosqlite.Connection, *, shared: bool = False) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception; one at a time per connection.

    Opened while the same task already holds one on `db`, it joins that one: its statements
    commit or roll back with the outermost transaction.

    `shared` marks a transaction of one statement that is atomic by itself (a queue claim or
    heartbeat): on PostgreSQL such transactions run side by side, while every other transaction
    has the whole fleet's write turn to itself, as SQLite's single writer has. SQLite ignores it.
    """
    if in_transaction(db):
        yield db
        return
    lock = _locks.setdefault(db, asyncio.Lock())
    if isinstance(db, PgConnection):
        async with lock, db.write_turn(shared=shared):
            mark = _open.set(_open.get() | {id(db)})
            try:
                yield db
            finally:
                _open.reset(mark)
        return
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
        self.waiting: list[_Waiting] = []
        self.flusher: asyncio.Task | None = None


@dataclasses.dataclass(eq=False)
class _Waiting:
    query: str
    params: tuple
    done: asyncio.Future
    wake_workers: bool


_groups: weakref.WeakKeyDictionary[aiosqlite.Connection, _Group] = weakref.WeakKeyDictionary()


async def fetch_grouped(db: aiosqlite.Connection, query: str, params=(), *,
                        wake_workers: bool = False) -> list[aiosqlite.Row]:
    """Run one self-contained write statement under group commit and return its rows.

    Statements that arrive while a commit is in progress share the next transaction, so
    concurrent callers pay for one fsync between them (and, on PostgreSQL, one round trip);
    each call returns only after its transaction is durable. A failing statement fails alone
    (the others run again without it); a failed commit fails the whole batch. `wake_workers`:
    the statement queues a job, so idle workers are told when it commits.
    """
    if in_transaction(db):  # part of a larger change: it commits with that one
        rows = await fetch_all(db, query, params)
        if wake_workers:
            await _notify_jobs(db)
        return rows
    group = _groups.setdefault(db, _Group())
    done = asyncio.get_running_loop().create_future()
    group.waiting.append(_Waiting(query, tuple(params), done, wake_workers))
    if group.flusher is None or group.flusher.done():
        # A fresh context: the flusher must never believe it is inside its creator's transaction.
        group.flusher = asyncio.create_task(_flush(db, group), context=contextvars.Context())
    return await done


async def fetch_atomic(db: aiosqlite.Connection, query: str, params=()) -> list[aiosqlite.Row]:
    """Run one statement that is atomic by itself (a queue claim, a fenced heartbeat) in its own transaction
    and return its rows. Such transactions run side by side on PostgreSQL (the write turn is shared, and
    BEGIN, the statement and COMMIT travel in one round trip), never inside a lifecycle change. Inside a
    transaction the running task already holds, it joins that one."""
    if in_transaction(db):
        return await fetch_all(db, query, params)
    if isinstance(db, PgConnection):
        async with _locks.setdefault(db, asyncio.Lock()):
            return await db.run_atomic(query, tuple(params))
    async with transaction(db, shared=True):
        return await fetch_all(db, query, params)


class _StatementFailed(Exception):
    """One statement of a batch failed: the batch is rolled back and run again without it."""


async def _flush(db: aiosqlite.Connection, group: _Group) -> None:
    while group.waiting:
        batch, group.waiting = group.waiting, []
        if isinstance(db, PgConnection) and await _flush_in_one_trip(db, batch):
            continue
        await _flush_one_by_one(db, batch)


async def _flush_in_one_trip(db: PgConnection, batch: list[_Waiting]) -> bool:
    """The whole batch as one transaction in one round trip; False (nothing kept) when a statement failed."""
    try:
        async with _locks.setdefault(db, asyncio.Lock()):
            results = await db.run_batch([(w.query, w.params) for w in batch], shared=False,
                                         notify=any(w.wake_workers for w in batch))
    except Error:
        return False  # find out which statement failed, one by one
    except BaseException as exc:
        for w in batch:
            if not w.done.done():
                w.done.set_exception(exc)
        raise
    for w, rows in zip(batch, results, strict=True):
        if not w.done.done():
            w.done.set_result(rows)
    return True


async def _flush_one_by_one(db: aiosqlite.Connection, batch: list[_Waiting]) -> None:
    while batch:
        results, failed = [], None
        try:
            async with transaction(db):
                for w in batch:
                    try:
                        results.append((w, list(await db.execute_fetchall(w.query, w.params))))
                    except Error as exc:
                        # PostgreSQL aborts the whole transaction on an error (SQLite only the
                        # statement): take the statement out and run the rest again.
                        failed = (w, exc)
                        raise _StatementFailed from exc
                if any(w.wake_workers for w in batch):
                    await _notify_jobs(db)
        except _StatementFailed:
            w, exc = failed
            if not w.done.done():
                w.done.set_exception(exc)
            batch = [b for b in batch if b is not w]
            continue
        except BaseException as exc:  # the commit itself failed: nobody's statement is durable
            for w in batch:
                if not w.done.done():
                    w.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for w, rows in results:
            if not w.done.done():  # else the caller gave up waiting
                w.done.set_result(rows)
        return


async def _notify_jobs(db: aiosqlite.Connection) -> None:
    """Tell idle workers that a job was queued: on PostgreSQL a NOTIFY (sent at commit); SQLite
    workers poll, so nothing to do there."""
    if isinstance(db, PgConnection):
        await db.notify_jobs()


async def wait_for_jobs(db: aiosqlite.Connection, timeout: float) -> None:
    """An idle worker's pause: until a job is queued (PostgreSQL's LISTEN) or `timeout` seconds pass."""
    if isinstance(db, PgConnection):
        await db.wait_for_jobs(timeout)
    else:
        await asyncio.sleep(timeout)


async def reset_identities(db: aiosqlite.Connection) -> None:
    """After rows were inserted with their ids: make sure new rows get larger ones (PostgreSQL's identity
    counters don't follow explicit ids; SQLite's AUTOINCREMENT does)."""
    if isinstance(db, PgConnection):
        await db.reset_identities()


async def fetch_one(db: aiosqlite.Connection, query: str, params=()) -> aiosqlite.Row | None:
    """First row of a query, in one trip to the connection's thread."""
    rows = await db.execute_fetchall(query, params)
    return rows[0] if rows else None


async def fetch_all(db: aiosqlite.Connection, query: str, params=()) -> list[aiosqlite.Row]:
    return list(await db.execute_fetchall(query, params))
