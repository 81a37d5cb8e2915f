"""A real PostgreSQL server for the tests: initdb in a temporary directory, pg_ctl start on 127.0.0.1.

One server per test session (`pg_server`), a fresh database per test (`pg_url`). The machine's
PostgreSQL 15 binaries come from PATH or /usr/lib/postgresql/*/bin; the Makefile installs them with
apt where they are missing. PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` user that the package creates.

    python -m tests.pg_server DIR   starts one and prints its URL (for benchmarks; stop it with pg_ctl)
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (`make setup` does, with apt) to run these tests")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A throwaway PostgreSQL cluster. `fast` turns off fsync: for tests, never for measurements."""

    def __init__(self, root: Path, *, fast: bool = True) -> None:
        self.root, self.fast = root, fast
        self.data = root / "pgdata"
        self.port = _free_port()
        self._as = []
        self._uid = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            self._as, self._uid = ["runuser", "-u", "postgres", "--"], (user.pw_uid, user.pw_gid)

    def _run(self, *args: str) -> None:
        out = subprocess.run([*self._as, *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {out.stderr.strip() or out.stdout.strip()}")

    def start(self) -> PgServer:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._uid:
            os.chown(self.root, *self._uid)
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "dreambot", "--auth=trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.root}",
                   "-c max_connections=300", "-c shared_buffers=64MB"]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-o", " ".join(options), "start")
        return self

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://dreambot@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_shared: PgServer | None = None


def shared_server() -> PgServer:
    """The session's server, started on first use and stopped when the test process exits."""
    global _shared
    if _shared is None:
        root = Path(tempfile.mkdtemp(prefix="dreambot-pg-"))
        _shared = PgServer(root).start()

        def stop(server=_shared) -> None:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)
        atexit.register(stop)
    return _shared


@pytest.fixture(scope="session")
def pg_server():
    return shared_server()


_names = itertools.count()


@pytest.fixture
def pg_url(pg_server):
    """The URL of a fresh, empty database on the session's server."""
    name = f"test_{os.getpid()}_{next(_names)}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


if __name__ == "__main__":
    server = PgServer(Path(sys.argv[1]), fast=False).start()
    print(server.create_database("dreambot"))
