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

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hopline.loginserver import TEST_COST, Database, LoginService, PasswordHasher
from hopline.testing.postgres import PostgresUnavailable, fresh_database, throwaway_postgres

POSTGRES_ENV = "HOPLINE_TEST_POSTGRES_URL"
NOW = 1_800_000_000.0


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server URL (see the module docstring), or skip."""
    given = os.environ.get(POSTGRES_ENV)
    if given:
        yield given
        return
    try:
        with throwaway_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server: ${POSTGRES_ENV} is not set and {exc}")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database, for each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
        return
    server = request.getfixturevalue("postgres_url")
    async with fresh_database(server) as url:
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
