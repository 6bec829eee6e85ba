"""The account database: URLs, schema and migrations, and every query, on both backends."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hopline.identity import Role
from hopline.loginserver.db import (
    MIGRATIONS,
    AccountRecord,
    Database,
    DatabaseUnavailable,
    DuplicateAccount,
    Migration,
    NewCertificate,
    SchemaTooNew,
    SupernodeRecord,
    UnsupportedDatabaseURL,
    async_database_url,
    schema_version,
)

NOW = 1_800_000_000.0  # the time the db fixture opens the database

# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///accounts.sqlite3", "sqlite+aiosqlite"),
        ("sqlite:////var/lib/hopline/a.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///a.db", "sqlite+aiosqlite"),
        ("postgresql://u:p@db.example/hopline", "postgresql+asyncpg"),
        ("postgres://u@db.example/hopline", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg"),
    ],
)
def test_user_urls_map_to_async_drivers(given: str, driver: str) -> None:
    url = async_database_url(given)
    assert url.drivername == driver
    assert url.database == async_database_url(given).database


def test_postgres_url_keeps_credentials_and_maps_sslmode() -> None:
    url = async_database_url("postgresql://alice:s3cret@db.example:6543/hl?sslmode=require")
    assert (url.username, url.password, url.host, url.port) == (
        "alice",
        "s3cret",
        "db.example",
        6543,
    )
    assert url.query == {"ssl": "require"}


@pytest.mark.parametrize("given", ["mysql://u@h/d", "postgresql+psycopg2://u@h/d", "not a url"])
def test_unsupported_urls_are_refused(given: str) -> None:
    with pytest.raises(UnsupportedDatabaseURL):
        async_database_url(given)


# ---------------------------------------------------------------- schema


async def test_first_open_creates_schema_version_1(db: Database) -> None:
    assert db.version == 1

    def tables(sync_conn: object) -> set[str]:
        return set(inspect(sync_conn).get_table_names())

    async with db.transaction(write=False) as conn:
        names = await conn.run_sync(tables)
        rows = (await conn.execute(select(schema_version))).all()
    assert {
        "accounts",
        "certificates",
        "enrollment_tokens",
        "supernodes",
        "schema_version",
    } <= names
    assert [(row.version, row.applied_at) for row in rows] == [(1, NOW)]


async def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    database = await Database.open(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    try:
        async with database.transaction(write=False) as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        await database.close()
    assert mode == "wal"
    assert timeout == 10_000


async def test_a_database_at_version_1_opens_again_with_its_data(database_url: str) -> None:
    first = await Database.open(database_url, now=NOW)
    await first.create_account(account("alice"))
    await first.close()
    again = await Database.open(database_url, now=NOW + 1)
    try:
        assert again.version == 1
        stored = await again.get_account("alice")
    finally:
        await again.close()
    assert stored == account("alice")


async def test_a_newer_unknown_version_is_refused(database_url: str) -> None:
    first = await Database.open(database_url, now=NOW)
    async with first.transaction() as conn:
        await conn.execute(
            schema_version.insert().values(version=7, description="future", applied_at=NOW)
        )
    await first.close()
    with pytest.raises(SchemaTooNew, match=r"version 7.*up to 1.*upgrade Hopline"):
        await Database.open(database_url)


async def test_step_2_is_applied_once_to_a_version_1_database(database_url: str) -> None:
    runs = []

    async def add_notes(conn: AsyncConnection) -> None:
        runs.append(1)
        table = Table("notes", MetaData(), Column("id", Integer, primary_key=True))
        await conn.run_sync(table.create)

    steps = (*MIGRATIONS, Migration(2, "notes", add_notes))
    await (await Database.open(database_url, now=NOW)).close()  # a version-1 database
    upgraded = await Database.open(database_url, migrations=steps, now=NOW + 5)
    assert upgraded.version == 2
    async with upgraded.transaction(write=False) as conn:
        versions = (await conn.execute(select(schema_version.c.version))).scalars().all()
        await conn.execute(text("SELECT count(*) FROM notes"))
    await upgraded.close()
    await (await Database.open(database_url, migrations=steps)).close()
    assert sorted(versions) == [1, 2]
    assert runs == [1]
    with pytest.raises(SchemaTooNew):  # and the old code now refuses it
        await Database.open(database_url)


async def test_a_failing_step_leaves_the_database_as_it_was(database_url: str) -> None:
    async def broken(conn: AsyncConnection) -> None:
        table = Table("half_done", MetaData(), Column("id", Integer, primary_key=True))
        await conn.run_sync(table.create)
        raise RuntimeError("step 2 went wrong")

    await (await Database.open(database_url, now=NOW)).close()
    with pytest.raises(RuntimeError, match="step 2 went wrong"):
        await Database.open(database_url, migrations=(*MIGRATIONS, Migration(2, "x", broken)))
    database = await Database.open(database_url)
    try:
        assert database.version == 1
        async with database.transaction(write=False) as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await database.close()
    assert "half_done" not in names  # DDL was inside the transaction, on SQLite too


async def test_misnumbered_steps_are_a_programming_error(tmp_path: Path) -> None:
    async def nothing(conn: AsyncConnection) -> None:
        del conn

    with pytest.raises(ValueError, match="numbered 3"):
        await Database.open(
            f"sqlite:///{tmp_path / 'a.db'}", migrations=(*MIGRATIONS, Migration(3, "x", nothing))
        )


async def test_an_unreachable_postgres_is_unavailable_not_a_crash() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(DatabaseUnavailable, match=r"unavailable") as info:
            await Database.open(f"postgresql://hopline:pw@127.0.0.1:{port}/none")
    assert "pw" not in str(info.value).replace("postgresql", "")


async def test_an_sqlite_file_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="no directory"):
        await Database.open(f"sqlite:///{tmp_path / 'missing' / 'a.db'}")


# ---------------------------------------------------------------- accounts


def account(name: str, password_hash: str = "$argon2id$fake") -> AccountRecord:
    return AccountRecord(
        username=name,
        password_hash=password_hash,
        full_name="Alice Example",
        city="Tallinn",
        country="EE",
        language="et",
        created_at=NOW,
        updated_at=NOW,
    )


async def test_accounts_are_unique_by_username(db: Database) -> None:
    await db.create_account(account("alice"))
    with pytest.raises(DuplicateAccount):
        await db.create_account(account("alice"))
    assert await db.account_exists("alice")
    assert not await db.account_exists("bob")
    assert await db.get_account("bob") is None


async def test_password_hash_is_replaced_only_if_unchanged(db: Database) -> None:
    await db.create_account(account("alice", "old"))
    assert not await db.replace_password_hash("alice", "new", NOW + 1, expected="other")
    assert await db.replace_password_hash("alice", "new", NOW + 1, expected="old")
    stored = await db.get_account("alice")
    assert stored is not None
    assert (stored.password_hash, stored.updated_at) == ("new", NOW + 1)
    assert not await db.replace_password_hash("nobody", "x", NOW)


# ---------------------------------------------------------------- certificates


def certificate(
    subject: str, expires_at: int = int(NOW) + 3600, role: int = Role.USER
) -> NewCertificate:
    return NewCertificate(
        subject=subject,
        role=role,
        device_id=b"device-1",
        static_key=bytes(32),
        signing_key=None,
        issued_at=int(NOW),
        expires_at=expires_at,
    )


async def test_serials_come_from_the_database_and_are_never_reused(db: Database) -> None:
    first = await db.add_certificate(certificate("alice"))
    second = await db.add_certificate(certificate("alice"))
    assert first is not None and second is not None
    assert second > first >= 1
    await db.prune(NOW + 10**6)  # deletes both (long expired)
    assert await db.get_certificate(second) is None
    third = await db.add_certificate(certificate("alice"))
    assert third is not None and third > second


async def test_concurrent_issues_get_distinct_serials(db: Database) -> None:
    serials = await asyncio.gather(*(db.add_certificate(certificate("x")) for _ in range(20)))
    assert len(set(serials)) == 20


async def test_certificate_for_a_missing_account_is_not_recorded(db: Database) -> None:
    assert await db.add_certificate(certificate("ghost"), require_account=True) is None
    await db.create_account(account("alice"))
    serial = await db.add_certificate(certificate("alice"), require_account=True)
    assert serial is not None
    stored = await db.get_certificate(serial)
    assert stored is not None
    assert (stored.subject, stored.role, stored.device_id, stored.revoked_at) == (
        "alice",
        Role.USER,
        b"device-1",
        None,
    )


async def test_revocation_and_the_list_of_live_revoked_serials(db: Database) -> None:
    short = await db.add_certificate(certificate("a", expires_at=int(NOW) + 10))
    long = await db.add_certificate(certificate("a", expires_at=int(NOW) + 1000))
    kept = await db.add_certificate(certificate("a"))
    assert short and long and kept
    assert await db.revoke_certificate(short, NOW)
    assert await db.revoke_certificate(long, NOW)
    assert not await db.revoke_certificate(long, NOW + 1)  # already
    assert not await db.revoke_certificate(999_999, NOW)  # unknown
    assert await db.revoked_serials(NOW) == [short, long]
    assert await db.revoked_serials(NOW + 10) == [long]  # the expired one drops out
    assert await db.revoked_serials(NOW + 9.5) == [short, long]


async def test_deleting_an_account_revokes_only_its_live_certificates(db: Database) -> None:
    await db.create_account(account("alice"))
    await db.create_account(account("bob"))
    a1 = await db.add_certificate(certificate("alice"))
    a2 = await db.add_certificate(certificate("alice"))
    b1 = await db.add_certificate(certificate("bob"))
    assert a1 and a2 and b1
    await db.revoke_certificate(a1, NOW - 5)
    assert await db.delete_account("alice", NOW) == [a2]
    assert await db.get_account("alice") is None
    assert await db.delete_account("alice", NOW) is None
    bob_cert = await db.get_certificate(b1)
    assert bob_cert is not None and bob_cert.revoked_at is None
    assert await db.revoked_serials(NOW) == [a1, a2]


# ---------------------------------------------------------------- enrollment and supernodes


def supernode(node_id: str, address: str | None, seen: float) -> SupernodeRecord:
    return SupernodeRecord(
        node_id=node_id,
        static_key=hashlib.sha256(node_id.encode()).digest(),
        signing_key=None,
        address=address,
        enrolled_at=seen,
        last_seen=seen,
    )


async def test_enrollment_token_is_used_once(db: Database) -> None:
    token = hashlib.sha256(b"token").digest()
    await db.add_enrollment_token(token, NOW, NOW + 60)
    node = supernode("sn-1", "192.0.2.1:4000", NOW)
    first = await db.enroll_supernode(token, node, certificate("sn-1", role=Role.SUPERNODE), NOW)
    assert first is not None
    again = await db.enroll_supernode(token, node, certificate("sn-1", role=Role.SUPERNODE), NOW)
    assert again is None
    assert await db.get_supernode("sn-1") == node


async def test_expired_or_unknown_tokens_change_nothing(db: Database) -> None:
    token = hashlib.sha256(b"token").digest()
    await db.add_enrollment_token(token, NOW, NOW + 60)
    node = supernode("sn-1", "192.0.2.1:4000", NOW + 60)
    new = certificate("sn-1", role=Role.SUPERNODE)
    assert await db.enroll_supernode(token, node, new, NOW + 60) is None
    assert await db.enroll_supernode(b"\x00" * 32, node, new, NOW) is None
    assert await db.get_supernode("sn-1") is None
    assert await db.get_certificate(1) is None


async def test_re_enrollment_updates_address_and_keeps_enrolment_time(db: Database) -> None:
    for n, (address, when) in enumerate([("192.0.2.1:4000", NOW), ("192.0.2.9:5000", NOW + 50)]):
        token = bytes([n]) * 32
        await db.add_enrollment_token(token, NOW, NOW + 3600)
        node = supernode("sn-1", address, when)
        assert await db.enroll_supernode(token, node, certificate("sn-1"), when) is not None
    stored = await db.get_supernode("sn-1")
    assert stored is not None
    assert (stored.address, stored.enrolled_at, stored.last_seen) == (
        "192.0.2.9:5000",
        NOW,
        NOW + 50,
    )


async def test_recent_supernodes_most_recent_first_within_window(db: Database) -> None:
    for n, (seen, address) in enumerate(
        [
            (NOW - 500, "192.0.2.1:1"),
            (NOW - 10, "192.0.2.2:2"),
            (NOW - 100, "192.0.2.3:3"),
            (NOW - 5, None),
        ]
    ):
        token = bytes([n]) * 32
        await db.add_enrollment_token(token, NOW - 1000, NOW + 1000)
        node = supernode(f"sn-{n}", address, seen)
        await db.enroll_supernode(token, node, certificate(node.node_id), seen)
    recent = await db.recent_supernodes(NOW - 200, limit=10)
    assert [n.address for n in recent] == ["192.0.2.2:2", "192.0.2.3:3"]
    assert await db.touch_supernode("sn-0", NOW, "192.0.2.99:9")
    assert not await db.touch_supernode("sn-missing", NOW)
    recent = await db.recent_supernodes(NOW - 200, limit=2)
    assert [n.address for n in recent] == ["192.0.2.99:9", "192.0.2.2:2"]
