"""The login server's database: accounts, certificates, enrollment tokens, supernodes.

One code path for SQLite and PostgreSQL, through SQLAlchemy 2's asyncio Core
(no ORM). Users give ordinary URLs, which :func:`async_database_url` maps to
the async drivers:

* ``sqlite:///path`` → ``sqlite+aiosqlite:///path`` (WAL journal, a busy
  timeout, ``synchronous=FULL``; SQLAlchemy emits ``BEGIN`` itself, and
  ``BEGIN IMMEDIATE`` for transactions that write, so transactions — DDL
  included — are real and writers queue on the busy timeout instead of failing);
* ``postgresql://user:pass@host/db`` (or ``postgres://``) →
  ``postgresql+asyncpg://...`` (a libpq ``sslmode=`` becomes asyncpg's ``ssl=``).

Tables (schema version 1)
-------------------------
``accounts``
    canonical username (unique), Argon2id hash, public profile (full name,
    city, country, language), created/updated times.
``certificates``
    every certificate issued: serial (primary key, from the database, never
    reused), subject, role, device id, keys, issued/expiry, ``revoked_at``.
``enrollment_tokens``
    one-time supernode tokens, stored only as SHA-256 hashes, with creation,
    expiry, use time and the node that used it.
``supernodes``
    node id, static and signing keys, last reported public address, enrolment
    and last-seen times.
``schema_version``
    one row per migration step applied.

Times are Unix seconds (double precision), except certificate times, which
are whole seconds as in the certificates themselves.

Migrations
----------
:data:`MIGRATIONS` is an ordered list of :class:`Migration` steps keyed by
version. :meth:`Database.open` creates ``schema_version`` if needed, refuses a
database whose version is newer than the newest step it knows
(:class:`SchemaTooNew`), and applies the missing steps in one transaction
(on PostgreSQL under an advisory lock, so two servers starting together do
not both migrate). To change the schema, append ``Migration(2, ...)`` whose
function alters the tables, and update the table definitions below to the new
shape; step 1 keeps creating the version-1 tables from its own frozen copy.

Errors: the database being unreachable, locked past the busy timeout or out
of connections raises :class:`DatabaseUnavailable`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hopline.identity.certificate import Role

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
_PG_MIGRATION_LOCK = 0x486F704C696E65  # "HopLine": pg_advisory_xact_lock key
_READ_ONLY = "hopline_read_only"


class DatabaseError(Exception):
    """Base of the database's own errors."""


class UnsupportedDatabaseURL(DatabaseError):
    """The URL names a database or driver this server does not support."""


class SchemaTooNew(DatabaseError):
    """The database was migrated by a newer Hopline than this one."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached or stayed locked; try again later."""


class DuplicateAccount(DatabaseError):
    """An account with this username exists already."""


# ---------------------------------------------------------------- URLs


def async_database_url(url: str) -> URL:
    """Map a user-facing database URL to its SQLAlchemy asyncio form."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UnsupportedDatabaseURL(f"not a database URL: {url!r:.60}") from exc
    driver = parsed.drivername
    if driver in {"sqlite", "sqlite+aiosqlite"}:
        return parsed.set(drivername="sqlite+aiosqlite")
    if driver in {"postgresql", "postgres", "postgresql+asyncpg"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
        if "sslmode" in parsed.query:
            mode = parsed.query["sslmode"]
            parsed = parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
        return parsed
    raise UnsupportedDatabaseURL(
        f"unsupported database {driver!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


# ---------------------------------------------------------------- schema


def _schema_v1() -> MetaData:
    """The version-1 tables (frozen: migration step 1 creates exactly these)."""
    md = MetaData()
    Table(
        "accounts",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("username", String(32), nullable=False, unique=True),
        Column("password_hash", Text, nullable=False),
        Column("full_name", String(100)),
        Column("city", String(100)),
        Column("country", String(2)),
        Column("language", String(2)),
        Column("created_at", Double, nullable=False),
        Column("updated_at", Double, nullable=False),
    )
    certificates = Table(
        "certificates",
        md,
        Column(
            "serial",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("subject", String(64), nullable=False),
        Column("role", Integer, nullable=False),
        Column("device_id", LargeBinary, nullable=False),
        Column("static_key", LargeBinary, nullable=False),
        Column("signing_key", LargeBinary),
        Column("issued_at", BigInteger, nullable=False),
        Column("expires_at", BigInteger, nullable=False),
        Column("revoked_at", Double),
        sqlite_autoincrement=True,  # never reuse a serial, even after deletes
    )
    Index("certificates_subject", certificates.c.subject)
    Index("certificates_revoked", certificates.c.revoked_at, certificates.c.expires_at)
    Table(
        "enrollment_tokens",
        md,
        Column("token_hash", LargeBinary(32), primary_key=True),
        Column("created_at", Double, nullable=False),
        Column("expires_at", Double, nullable=False),
        Column("used_at", Double),
        Column("node_id", String(64)),
    )
    supernodes = Table(
        "supernodes",
        md,
        Column("node_id", String(64), primary_key=True),
        Column("static_key", LargeBinary, nullable=False, unique=True),
        Column("signing_key", LargeBinary),
        Column("address", String(64)),
        Column("enrolled_at", Double, nullable=False),
        Column("last_seen", Double, nullable=False),
    )
    Index("supernodes_last_seen", supernodes.c.last_seen)
    return md


# The current schema, used by the queries below. When a migration step
# changes a table, change it here too (and leave _schema_v1 as it is).
metadata = _schema_v1()
accounts = metadata.tables["accounts"]
certificates = metadata.tables["certificates"]
enrollment_tokens = metadata.tables["enrollment_tokens"]
supernodes = metadata.tables["supernodes"]

_version_metadata = MetaData()
schema_version = Table(
    "schema_version",
    _version_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", Double, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One schema step: from ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[AsyncConnection], Awaitable[None]]


async def _create_v1(conn: AsyncConnection) -> None:
    await conn.run_sync(_schema_v1().create_all)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "accounts, certificates, enrollment tokens, supernodes", _create_v1),
)


def _check_steps(steps: Sequence[Migration]) -> None:
    for number, step in enumerate(steps, start=1):
        if step.version != number:
            raise ValueError(f"migration step {number} is numbered {step.version}")


async def _current_version(conn: AsyncConnection) -> int:
    value = (await conn.execute(select(func.max(schema_version.c.version)))).scalar()
    return int(value) if value is not None else 0


async def migrate(conn: AsyncConnection, steps: Sequence[Migration], now: float) -> int:
    """Bring the schema up to the last of ``steps`` inside the open transaction.

    Returns the version the database is at. Raises :class:`SchemaTooNew` if
    the database is at a version newer than ``steps`` know.
    """
    _check_steps(steps)
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    await conn.run_sync(_version_metadata.create_all)
    version = await _current_version(conn)
    newest = len(steps)
    if version > newest:
        raise SchemaTooNew(
            f"the database schema is at version {version}, but this Hopline knows versions "
            f"up to {newest} only: it was used by a newer Hopline; upgrade Hopline to open it"
        )
    for step in steps[version:]:
        log.info("migrating the database to version %d: %s", step.version, step.description)
        await step.apply(conn)
        await conn.execute(
            insert(schema_version).values(
                version=step.version, description=step.description, applied_at=now
            )
        )
    return max(version, newest)


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class AccountRecord:
    """One row of ``accounts``."""

    username: str
    password_hash: str
    full_name: str | None
    city: str | None
    country: str | None
    language: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class CertificateRecord:
    """One row of ``certificates``."""

    serial: int
    subject: str
    role: int
    device_id: bytes
    static_key: bytes
    signing_key: bytes | None
    issued_at: int
    expires_at: int
    revoked_at: float | None


@dataclass(frozen=True)
class NewCertificate:
    """What to record for a certificate about to be signed (the serial comes back)."""

    subject: str
    role: int
    device_id: bytes
    static_key: bytes
    signing_key: bytes | None
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class SupernodeRecord:
    """One row of ``supernodes``."""

    node_id: str
    static_key: bytes
    signing_key: bytes | None
    address: str | None
    enrolled_at: float
    last_seen: float


def _account(row: Any) -> AccountRecord:
    return AccountRecord(
        username=row.username,
        password_hash=row.password_hash,
        full_name=row.full_name,
        city=row.city,
        country=row.country,
        language=row.language,
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
    )


def _certificate(row: Any) -> CertificateRecord:
    return CertificateRecord(
        serial=int(row.serial),
        subject=row.subject,
        role=int(row.role),
        device_id=bytes(row.device_id),
        static_key=bytes(row.static_key),
        signing_key=None if row.signing_key is None else bytes(row.signing_key),
        issued_at=int(row.issued_at),
        expires_at=int(row.expires_at),
        revoked_at=None if row.revoked_at is None else float(row.revoked_at),
    )


def _supernode(row: Any) -> SupernodeRecord:
    return SupernodeRecord(
        node_id=row.node_id,
        static_key=bytes(row.static_key),
        signing_key=None if row.signing_key is None else bytes(row.signing_key),
        address=row.address,
        enrolled_at=float(row.enrolled_at),
        last_seen=float(row.last_seen),
    )


# ---------------------------------------------------------------- SQLite setup


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, busy timeout, and SQLAlchemy-controlled BEGIN (see the module docstring)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 must not BEGIN on its own
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _check_sqlite_directory(url: URL) -> None:
    """Refuse early, and clearly, a SQLite file whose directory does not exist."""
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return
    if path.startswith("file:"):
        return  # a URI filename: leave it to SQLite
    parent = Path(path).parent
    if not parent.is_dir():
        raise DatabaseUnavailable(f"cannot open SQLite database {path}: no directory {parent}")


# ---------------------------------------------------------------- the database


class Database:
    """The login server's storage. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, version: int) -> None:
        self.engine = engine
        self.version = version

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        now: float | None = None,
        pool_size: int = 5,
    ) -> Database:
        """Connect, create or migrate the schema, and return the database.

        ``now`` (default: the current time) is recorded as the time of any
        migration step applied. ``pool_size`` applies to PostgreSQL.
        """
        async_url = async_database_url(url)
        _check_sqlite_directory(async_url)
        options: dict[str, Any] = {}
        if async_url.get_backend_name() == "postgresql":
            options.update(pool_size=pool_size, pool_pre_ping=True)
        engine = create_async_engine(async_url, **options)
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        database = cls(engine, 0)
        try:
            async with database.transaction() as conn:
                started = time.time() if now is None else now
                database.version = await migrate(conn, migrations, started)
        except BaseException:
            await engine.dispose()
            raise
        return database

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction, committed if the block succeeds."""
        try:
            async with self.engine.connect() as conn:
                if not write:
                    await conn.execution_options(**{_READ_ONLY: True})
                async with conn.begin():
                    yield conn
        except (OperationalError, InterfaceError, PoolTimeoutError, OSError) as exc:
            url = self.engine.url.render_as_string(hide_password=True)
            raise DatabaseUnavailable(f"database {url} unavailable: {exc}") from exc

    # ------------------------------------------------------------ accounts

    async def create_account(self, account: AccountRecord) -> None:
        """Insert ``account``; raise :class:`DuplicateAccount` if the name is taken."""
        try:
            async with self.transaction() as conn:
                await conn.execute(insert(accounts).values(**account.__dict__))
        except IntegrityError as exc:
            raise DuplicateAccount(f"username {account.username!r} is taken") from exc

    async def get_account(self, username: str) -> AccountRecord | None:
        """The account named ``username`` (canonical), or None."""
        async with self.transaction(write=False) as conn:
            row = (
                await conn.execute(select(accounts).where(accounts.c.username == username))
            ).first()
        return None if row is None else _account(row)

    async def account_exists(self, username: str) -> bool:
        """True if an account named ``username`` exists."""
        async with self.transaction(write=False) as conn:
            query = select(accounts.c.id).where(accounts.c.username == username)
            return (await conn.execute(query)).first() is not None

    async def replace_password_hash(
        self, username: str, new_hash: str, now: float, *, expected: str | None = None
    ) -> bool:
        """Store a new hash; if ``expected`` is given, only if it is still the stored one."""
        query = update(accounts).where(accounts.c.username == username)
        if expected is not None:
            query = query.where(accounts.c.password_hash == expected)
        async with self.transaction() as conn:
            result = await conn.execute(query.values(password_hash=new_hash, updated_at=now))
        return result.rowcount == 1

    async def delete_account(self, username: str, now: float) -> list[int] | None:
        """Delete the account and revoke its live certificates, atomically.

        Returns the serials revoked, or None if there was no such account.
        """
        async with self.transaction() as conn:
            deleted = await conn.execute(delete(accounts).where(accounts.c.username == username))
            if deleted.rowcount != 1:
                return None
            live = (
                certificates.c.subject == username,
                certificates.c.role == int(Role.USER),
                certificates.c.revoked_at.is_(None),
            )
            result = await conn.execute(
                update(certificates)
                .where(*live)
                .values(revoked_at=now)
                .returning(certificates.c.serial)
            )
            return sorted(int(serial) for serial in result.scalars())

    # ------------------------------------------------------------ certificates

    async def add_certificate(
        self, new: NewCertificate, *, require_account: bool = False
    ) -> int | None:
        """Record a certificate and return its serial.

        With ``require_account``, the subject's account is locked for the
        transaction and None is returned if it does not exist, so a
        certificate is never issued to an account being deleted.
        """
        async with self.transaction() as conn:
            if require_account:
                query = select(accounts.c.id).where(accounts.c.username == new.subject)
                if (await conn.execute(query.with_for_update(read=True))).first() is None:
                    return None
            result = await conn.execute(
                insert(certificates).values(**new.__dict__).returning(certificates.c.serial)
            )
            return int(result.scalar_one())

    async def get_certificate(self, serial: int) -> CertificateRecord | None:
        """The certificate with ``serial``, or None."""
        async with self.transaction(write=False) as conn:
            query = select(certificates).where(certificates.c.serial == serial)
            row = (await conn.execute(query)).first()
        return None if row is None else _certificate(row)

    async def revoke_certificate(self, serial: int, now: float) -> bool:
        """Mark the certificate revoked; False if unknown or revoked already."""
        async with self.transaction() as conn:
            result = await conn.execute(
                update(certificates)
                .where(certificates.c.serial == serial, certificates.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return result.rowcount == 1

    async def revoked_serials(self, now: float) -> list[int]:
        """Serials of revoked certificates that have not expired yet, ascending."""
        async with self.transaction(write=False) as conn:
            query = (
                select(certificates.c.serial)
                .where(
                    certificates.c.revoked_at.is_not(None),
                    certificates.c.expires_at > math.floor(now),
                )
                .order_by(certificates.c.serial)
            )
            return [int(s) for s in (await conn.execute(query)).scalars()]

    # ------------------------------------------------------------ enrollment

    async def add_enrollment_token(
        self, token_hash: bytes, created_at: float, expires_at: float
    ) -> None:
        """Store the SHA-256 hash of a new one-time token."""
        async with self.transaction() as conn:
            await conn.execute(
                insert(enrollment_tokens).values(
                    token_hash=token_hash, created_at=created_at, expires_at=expires_at
                )
            )

    async def enroll_supernode(
        self,
        token_hash: bytes,
        supernode: SupernodeRecord,
        certificate: NewCertificate,
        now: float,
    ) -> int | None:
        """Use a token, record the supernode and its certificate, atomically.

        Returns the certificate's serial, or None if the token is unknown,
        used or expired (then nothing changes).
        """
        async with self.transaction() as conn:
            used = await conn.execute(
                update(enrollment_tokens)
                .where(
                    enrollment_tokens.c.token_hash == token_hash,
                    enrollment_tokens.c.used_at.is_(None),
                    enrollment_tokens.c.expires_at > now,
                )
                .values(used_at=now, node_id=supernode.node_id)
            )
            if used.rowcount != 1:
                return None
            await self._upsert_supernode(conn, supernode)
            result = await conn.execute(
                insert(certificates).values(**certificate.__dict__).returning(certificates.c.serial)
            )
            return int(result.scalar_one())

    async def _upsert_supernode(self, conn: AsyncConnection, node: SupernodeRecord) -> None:
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        statement = dialect.insert(supernodes).values(**node.__dict__)
        changes = {
            "static_key": statement.excluded.static_key,
            "signing_key": statement.excluded.signing_key,
            "address": statement.excluded.address,
            "last_seen": statement.excluded.last_seen,
        }
        await conn.execute(
            statement.on_conflict_do_update(index_elements=["node_id"], set_=changes)
        )

    async def touch_supernode(self, node_id: str, now: float, address: str | None = None) -> bool:
        """Record that the supernode was seen (and its address, if given)."""
        changes: dict[str, Any] = {"last_seen": now}
        if address is not None:
            changes["address"] = address
        async with self.transaction() as conn:
            result = await conn.execute(
                update(supernodes).where(supernodes.c.node_id == node_id).values(**changes)
            )
        return result.rowcount == 1

    async def get_supernode(self, node_id: str) -> SupernodeRecord | None:
        """The supernode with ``node_id``, or None."""
        async with self.transaction(write=False) as conn:
            query = select(supernodes).where(supernodes.c.node_id == node_id)
            row = (await conn.execute(query)).first()
        return None if row is None else _supernode(row)

    async def recent_supernodes(self, seen_since: float, limit: int) -> list[SupernodeRecord]:
        """Supernodes with an address seen at or after ``seen_since``, most recent first."""
        async with self.transaction(write=False) as conn:
            query = (
                select(supernodes)
                .where(supernodes.c.last_seen >= seen_since, supernodes.c.address.is_not(None))
                .order_by(supernodes.c.last_seen.desc(), supernodes.c.node_id)
                .limit(limit)
            )
            return [_supernode(row) for row in await conn.execute(query)]

    # ------------------------------------------------------------ housekeeping

    async def prune(self, now: float, keep_expired_s: float = 86_400.0) -> int:
        """Delete certificates expired for ``keep_expired_s`` and dead tokens; return rows."""
        async with self.transaction() as conn:
            old = await conn.execute(
                delete(certificates).where(
                    certificates.c.expires_at < math.floor(now - keep_expired_s)
                )
            )
            tokens = await conn.execute(
                delete(enrollment_tokens).where(enrollment_tokens.c.expires_at < now)
            )
        return old.rowcount + tokens.rowcount
