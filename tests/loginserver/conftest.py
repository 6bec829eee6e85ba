"""Fixtures for the login-server tests: real databases, keys, services.

``database_url`` is parametrized over both backends: a SQLite file in
``tmp_path``, and a fresh PostgreSQL database on the server that
``postgres_url`` provides:

1. ``$HOPLINE_TEST_POSTGRES_URL`` if set (e.g. ``postgresql://user:pw@host/db``;
   each test gets its own ``CREATE DATABASE`` if the role may create
   databases, else the tables of that database are dropped before each test);
2. otherwise a throwaway server from Debian's packages, if
   ``/usr/lib/postgresql/*/bin/initdb`` exists: ``initdb`` into a temporary
   directory and ``pg_ctl start`` on a free loopback port (as the
   ``postgres`` user via ``runuser`` when we are root, because PostgreSQL
   refuses to run as root), stopped and deleted after the session;
3. otherwise the PostgreSQL cases are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from hopline.loginserver import TEST_COST, Database, LoginService, PasswordHasher

POSTGRES_ENV = "HOPLINE_TEST_POSTGRES_URL"
NOW = 1_800_000_000.0


# ---------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> Path | None:
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name))

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    for initdb in reversed(candidates):
        if (initdb.parent / "pg_ctl").exists():
            return initdb.parent
    return None


def _as_postgres(command: list[str]) -> list[str]:
    """Run ``command`` as the postgres user if we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *command]
    return ["su", "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(command)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        pytest.skip(f"no PostgreSQL server: {what} failed: {' | '.join(tail)}")


@contextlib.contextmanager
def _throwaway_postgres() -> Iterator[str]:
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip(
            f"no PostgreSQL server: ${POSTGRES_ENV} is not set and there is no "
            "/usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no PostgreSQL server: running as root and there is no 'postgres' user")
    top = Path(tempfile.mkdtemp(prefix="hopline-pg-"))
    data = top / "data"
    if os.geteuid() == 0:
        shutil.chown(top, user="postgres", group="postgres")
    port = _free_port()
    started = False
    try:
        _run(
            _as_postgres(
                [
                    *(str(bindir / "initdb"), "-D", str(data), "-U", "hopline", "-A", "trust"),
                    *("-E", "UTF8", "--no-sync", "--no-instructions"),
                ]
            ),
            "initdb",
        )
        options = (
            f"-p {port} -k {top} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run(
            _as_postgres(
                [
                    *(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(top / "log")),
                    *("-w", "-t", "60", "-o", options, "start"),
                ]
            ),
            "pg_ctl start",
        )
        started = True
        yield f"postgresql://hopline@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(
                _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server URL (see the module docstring), or skip."""
    given = os.environ.get(POSTGRES_ENV)
    if given:
        yield given
        return
    with _throwaway_postgres() as url:
        yield url


def _plain_url(url: str) -> str:
    """``url`` as a plain libpq URL that asyncpg's connect() takes."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


_DROP_ALL_TABLES = """
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE 'DROP TABLE IF EXISTS ' || quote_ident(t.tablename) || ' CASCADE';
  END LOOP;
END $$;
"""


@contextlib.asynccontextmanager
async def fresh_postgres_database(server_url: str) -> AsyncIterator[str]:
    """A new empty database on the server (or the given one, emptied)."""
    plain = _plain_url(server_url)
    name = f"hopline_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        created = True
    except asyncpg.InsufficientPrivilegeError:
        await conn.execute(_DROP_ALL_TABLES)
        created = False
    finally:
        await conn.close()
    if not created:
        yield server_url
        return
    try:
        yield make_url(plain).set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database, for each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
        return
    server = request.getfixturevalue("postgres_url")
    async with fresh_postgres_database(server) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """An opened (migrated) database on each backend."""
    database = await Database.open(database_url, now=NOW)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def ls_key() -> Ed25519PrivateKey:
    """The login server's signing key."""
    return Ed25519PrivateKey.generate()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock starting at NOW."""
    return FakeClock()


@pytest.fixture
def service(db: Database, ls_key: Ed25519PrivateKey, clock: FakeClock) -> LoginService:
    """A login service with a cheap Argon2 cost and a fake clock."""
    return LoginService(db, ls_key, hasher=PasswordHasher(TEST_COST), clock=clock)
