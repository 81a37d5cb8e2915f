"""The PostgreSQL connection: the few calls storage makes of a connection, on psycopg 3.

`PgConnection` offers what storage uses of an aiosqlite connection (`execute`, `execute_fetchall`,
`executescript`, rows readable by name and by index), with every statement rewritten by
storage/dialect.py, so the rest of storage runs unchanged on either backend.

Parameters are bound on the client (psycopg's ClientCursor), as SQLite binds them: a NULL or a
number is a literal the server types from its context, so `? IS NULL` and a comparison of an
integer column with a Python int need no casts.

Write turns: SQLite lets one writer in at a time (BEGIN IMMEDIATE). `transaction()` on PostgreSQL
takes a transaction-scoped advisory lock, so multi-statement changes (the lifecycle's) are just as
serial across every process of the fleet; a queue statement that is atomic on its own (claim,
heartbeat, progress) takes the same lock shared, so such statements run side by side but never
inside a lifecycle change. Idle workers LISTEN on a channel that enqueue NOTIFYs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import psycopg
from psycopg.adapt import Dumper, Loader

from storage import dialect, logs
from storage.errors import DatabaseUnreachable

log = logging.getLogger(__name__)

WRITE_LOCK = 0x647265616D626F74  # "dreambot": the advisory lock key of the write turn
JOBS_CHANNEL = "dreambot_jobs"


class Row(tuple):
    """A result row readable as row[0] and row["name"], like sqlite3.Row."""

    __slots__ = ()
    _index: dict[str, int]

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor):
    return _row_class(_names(cursor))


def _has_columns(cursor) -> bool:
    return cursor.pgresult is not None and cursor.pgresult.nfields > 0


def _names(cursor) -> tuple[str, ...]:
    """The result's column names, read off the result itself (psycopg's `description` builds an object per
    column on every access: most of the cost of a small statement)."""
    res = cursor.pgresult
    return tuple(res.fname(i).decode() for i in range(res.nfields)) if res is not None else ()


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


class _BoolAsInt(Dumper):
    """SQLite stores a Python bool as 0 or 1 in an INTEGER column; so does this backend."""

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"

    def quote(self, obj: bool) -> bytes:
        return self.dump(obj)


class _NumericAsNumber(Loader):
    """sum() and avg() of integers are NUMERIC on PostgreSQL: read them as int or float, as SQLite gives."""

    def load(self, data) -> int | float:
        text = bytes(data).decode()
        value = Decimal(text)
        return int(value) if value == value.to_integral_value() and "." not in text else float(value)


_FOREIGN_KEYS = """
    SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
    FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
    WHERE c.contype = 'f' AND n.nspname = current_schema()
"""
_IDENTITIES = """
    SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND is_identity = 'YES'
"""


class Cursor:
    """A finished statement: its rows (already fetched) and the number of rows it changed."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    async def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[Row]:
        return list(self._rows)


class PgConnection:
    """One psycopg connection in autocommit mode, speaking storage's SQL."""

    def __init__(self, conn: psycopg.AsyncConnection, url: str) -> None:
        self._conn, self._url = conn, url
        self._listener: psycopg.AsyncConnection | None = None
        self._wakeups: asyncio.Queue[None] | None = None
        self._listen_task: asyncio.Task | None = None
        self._prepared: dict[str, str] = {}  # storage's SQL -> its prepared statement's name on this connection
        self._names = itertools.count()
        self.in_transaction = False

    @classmethod
    async def open(cls, url: str) -> PgConnection:
        return cls(await _connect(url), url)

    async def execute(self, sql: str, params: Sequence | dict = ()) -> Cursor:
        async with self._conn.cursor(row_factory=_row_factory) as cur:
            await cur.execute(dialect.postgres(sql), params)
            rows = await cur.fetchall() if _has_columns(cur) else []
            return Cursor(rows, cur.rowcount)

    async def execute_fetchall(self, sql: str, params: Sequence | dict = ()) -> list[Row]:
        return await (await self.execute(sql, params)).fetchall()

    async def executescript(self, script: str) -> None:
        """Run a migration script (several statements, no parameters) as PostgreSQL reads it."""
        async with self._conn.cursor() as cur:
            await cur.execute(dialect.postgres_script(script))

    async def applied_migrations(self) -> list[str]:
        await self.executescript("CREATE TABLE IF NOT EXISTS schema_migrations "
                                 "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        return [r[0] for r in await self.execute_fetchall("SELECT name FROM schema_migrations ORDER BY name")]

    async def apply_migration(self, name: str, script: str, at: float) -> bool:
        """Apply one migration in one transaction, holding the write turn; False if another process
        applied it first. Foreign keys that a table rebuild dropped (CASCADE) are added back, which
        also checks every row still points at something, and identity counters move past the ids
        a rebuild copied."""
        async with self.write_turn(shared=False):
            if name in await self.applied_migrations():
                return False
            keys = await self.execute_fetchall(_FOREIGN_KEYS)
            await self.executescript(script)
            left = {(r[0], r[1]) for r in await self.execute_fetchall(_FOREIGN_KEYS)}
            for table, constraint, definition in keys:
                if (table, constraint) not in left:
                    await self._conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{constraint}" {definition}')
            await self.reset_identities()
            await self.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, at))
        return True

    async def reset_identities(self) -> None:
        """Move every identity column's counter past the largest id in its table (after rows were
        copied in with their ids), so the next insert never collides."""
        for table, column in await self.execute_fetchall(_IDENTITIES):
            await self._conn.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), "
                f"coalesce((SELECT max(\"{column}\") FROM \"{table}\"), 0) + 1, false)")

    @contextlib.asynccontextmanager
    async def write_turn(self, *, shared: bool) -> AsyncIterator[None]:
        """BEGIN, the fleet-wide write turn (exclusive, or shared by atomic queue statements), COMMIT."""
        lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await self._conn.execute(f"BEGIN; SELECT {lock}({WRITE_LOCK})")
        self.in_transaction = True
        try:
            yield
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                await self._conn.execute("ROLLBACK")
            raise
        else:
            await self._conn.execute("COMMIT")
        finally:
            self.in_transaction = False

    async def run_batch(self, statements: list[tuple[str, Sequence | dict]], *, shared: bool,
                        notify: bool = False, raw: bool = False,
                        prepare: tuple[str, str] | None = None) -> list[list[Row]]:
        """BEGIN, the write turn, every statement (and a NOTIFY), COMMIT, sent as one round trip; each
        statement's rows. On an error the transaction is rolled back and the error raised: nothing is kept.
        `raw`: the statements are PostgreSQL already, values included. `prepare` (sql, name): also PREPARE that
        statement under that name, for `run_atomic`'s later calls. The caller holds the connection's transaction
        lock."""
        lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        async with self._conn.cursor(row_factory=_row_factory) as cur:
            body = [sql if raw else cur.mogrify(dialect.postgres(sql), params) for sql, params in statements]
            head = [f"BEGIN; SELECT {lock}({WRITE_LOCK})"]
            if prepare is not None:  # PREPARE is not transactional: kept even if the statement fails
                head.insert(0, f"PREPARE {prepare[1]} AS {dialect.numbered(prepare[0])}")
            script = "; ".join([*head, *body] + ([f"NOTIFY {JOBS_CHANNEL}"] if notify else []) + ["COMMIT"])
            try:
                await cur.execute(script)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    await self._conn.execute("ROLLBACK")
                raise
            if prepare is not None:
                self._prepared[prepare[0]] = prepare[1]
                cur.nextset()  # past PREPARE's result
            results = []
            cur.nextset()  # past BEGIN's and the lock's results
            for _ in statements:
                cur.nextset()
                results.append(await cur.fetchall() if _has_columns(cur) else [])
            return results

    async def run_atomic(self, sql: str, params: Sequence) -> list[Row]:
        """One statement that is atomic by itself (a queue claim, a fenced heartbeat) in a transaction holding the
        write turn shared, in one round trip. The statement is prepared on the server the first time this
        connection runs it (parsed and planned once, as a worker runs it thousands of times); the values go as
        literals of EXECUTE, bound on the client as everywhere else."""
        name = self._prepared.get(sql)
        if name is None:
            # A fresh name per try: PREPARE is not transactional, so a try that failed after it may have kept it.
            return (await self.run_batch([(sql, params)], shared=True,
                                         prepare=(sql, f"dreambot_q{next(self._names)}")))[0]
        async with self._conn.cursor(row_factory=_row_factory) as cur:
            values = cur.mogrify(", ".join(["%s"] * len(params)), params) if params else ""
        return (await self.run_batch([(f"EXECUTE {name}({values})", ())], shared=True, raw=True))[0]

    async def notify_jobs(self) -> None:
        """Wake the idle workers listening (delivered when the surrounding transaction commits)."""
        await self._conn.execute(f"NOTIFY {JOBS_CHANNEL}")

    async def wait_for_jobs(self, timeout: float) -> None:
        """Return when a job is enqueued anywhere in the fleet, or after `timeout` seconds."""
        if self._listen_task is None or self._listen_task.done():
            if self._listener is not None:
                await self._listener.close()
            try:
                self._listener = await _connect(self._url)
                await self._listener.execute(f"LISTEN {JOBS_CHANNEL}")
            except (DatabaseUnreachable, psycopg.Error) as exc:  # poll meanwhile; the next wait tries again
                log.warning("cannot listen for new jobs (%s); polling every %.0f s", type(exc).__name__, timeout)
                self._listener = None
                await asyncio.sleep(timeout)
                return
            self._wakeups = asyncio.Queue()
            self._listen_task = asyncio.create_task(self._listen(self._listener, self._wakeups))
        queue = self._wakeups
        while not queue.empty():  # wake-ups from before this wait: a claim after them came first
            queue.get_nowait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.get(), timeout)

    @staticmethod
    async def _listen(conn: psycopg.AsyncConnection, queue: asyncio.Queue) -> None:
        try:
            async for _ in conn.notifies():
                queue.put_nowait(None)
        except psycopg.Error as exc:  # the server went away: the waiter falls back to its timeout
            log.warning("stopped listening for new jobs: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await self._listen_task
        if self._listener is not None:
            await self._listener.close()
        await self._conn.close()


async def _connect(url: str) -> psycopg.AsyncConnection:
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, cursor_factory=psycopg.AsyncClientCursor)
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(
            f"cannot connect to PostgreSQL at {redact(url)}: {_first_line(exc)}. Check that the server runs, "
            "that storage.database_url names it, and that the password is in PGPASSWORD or ~/.pgpass.") from None
    conn.adapters.register_dumper(bool, _BoolAsInt)
    conn.adapters.register_loader("numeric", _NumericAsNumber)
    return conn


def redact(url: str) -> str:
    """The URL with any password taken out, for messages and logs."""
    return logs.redact(url)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
