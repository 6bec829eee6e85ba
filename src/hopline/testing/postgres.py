"""A throwaway PostgreSQL server from Debian's packages, for tests and benchmarks.

:func:`throwaway_postgres` runs ``initdb`` into a temporary directory and
``pg_ctl start`` on a free loopback port (as the ``postgres`` user when we
are root, because PostgreSQL refuses to run as root), yields a
``postgresql://`` URL, and stops and deletes the server afterwards. When the
binaries or the user are missing it raises :class:`PostgresUnavailable` with
the reason, so a test can skip saying why. :func:`fresh_database` gives each
caller an empty database on a server.

``durable=False`` (tests) turns off fsync and synchronous commit; benchmarks
pass ``durable=True`` so their figures are those of a real server.
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
from sqlalchemy.engine import make_url

_DROP_ALL_TABLES = """
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE 'DROP TABLE IF EXISTS ' || quote_ident(t.tablename) || ' CASCADE';
  END LOOP;
END $$;
"""


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def _bindir() -> Path:
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name))

    for initdb in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)[::-1]:
        if (initdb.parent / "pg_ctl").exists():
            return initdb.parent
    raise PostgresUnavailable("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")


def _as_postgres(command: list[str]) -> list[str]:
    """Run ``command`` as the postgres user if we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *command]
    return ["su", "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(command)]


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PostgresUnavailable(f"{what} failed: {' | '.join(tail)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare_directory() -> Path:
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' user") from None
    top = Path(tempfile.mkdtemp(prefix="hopline-pg-"))
    if os.geteuid() == 0:
        shutil.chown(top, user="postgres", group="postgres")
    return top


@contextlib.contextmanager
def throwaway_postgres(*, durable: bool = False) -> Iterator[str]:
    """Start a temporary PostgreSQL server; yield its URL; stop and delete it."""
    bindir = _bindir()
    top = _prepare_directory()
    data, port, started = str(top / "data"), _free_port(), False
    try:
        initdb = [str(bindir / "initdb"), "-D", data, "-U", "hopline", "-A", "trust", "-E", "UTF8"]
        _run(
            _as_postgres([*initdb, "--no-instructions", *([] if durable else ["--no-sync"])]),
            "initdb",
        )
        options = f"-p {port} -k {top} -c listen_addresses=127.0.0.1"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        pg_ctl = [str(bindir / "pg_ctl"), "-D", data, "-l", str(top / "log"), "-w", "-t", "60"]
        _run(_as_postgres([*pg_ctl, "-o", options, "start"]), "pg_ctl start")
        started = True
        yield f"postgresql://hopline@127.0.0.1:{port}/postgres"
    finally:
        if started:
            stop = [str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "stop"]
            subprocess.run(_as_postgres(stop), capture_output=True, timeout=60, check=False)
        shutil.rmtree(top, ignore_errors=True)


def plain_url(url: str) -> str:
    """``url`` as a plain libpq URL that asyncpg's connect() takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new empty database on the server (or the given one, emptied), dropped after."""
    plain = plain_url(server_url)
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
