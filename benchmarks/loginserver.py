"""Login-server benchmark: registrations and logins per second, SQLite and PostgreSQL.

    python benchmarks/loginserver.py [--quick] [--postgres-url URL]

Runs :class:`hopline.loginserver.LoginService` directly (no network) with the
production Argon2id cost and reports registrations/s and logins/s (each login
is a password check, a certificate row and an Ed25519 signature), plus
logins/s at the cheapest Argon2 cost, which shows what the database and the
signing alone allow. PostgreSQL: ``--postgres-url``, else
``$HOPLINE_TEST_POSTGRES_URL``, else a throwaway server from Debian's
packages (as in the tests), else the PostgreSQL rows are skipped with the
reason. Writes benchmarks/results/loginserver.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from _common import print_table, write_json
from hopline.loginserver import (
    PRODUCTION_COST,
    TEST_COST,
    Argon2Cost,
    Database,
    LoginService,
    PasswordHasher,
)
from hopline.testing.postgres import PostgresUnavailable, fresh_database, throwaway_postgres

PASSWORD = "blue-Otter-42"
KEY = bytes(range(32))


async def timed(count: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> float:
    """Run ``op(0..count-1)`` with ``concurrency`` in flight; return seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            await op(n)

    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return time.perf_counter() - start


def cost_text(cost: Argon2Cost) -> str:
    """Argon2 parameters in one short line."""
    kib = cost.memory_cost_kib
    memory = f"{kib // 1024}MiB" if kib >= 1024 else f"{kib}KiB"
    return f"argon2id t={cost.time_cost} m={memory} p={cost.parallelism}"


async def bench_backend(url: str, counts: dict[str, int]) -> list[dict[str, Any]]:
    """Registrations and logins per second on one database."""
    concurrency = 2 * (os.cpu_count() or 1)
    database = await Database.open(url, now=time.time())
    results = []
    try:
        key = Ed25519PrivateKey.generate()
        for label, cost, n_reg, n_login in [
            ("production", PRODUCTION_COST, counts["register"], counts["login"]),
            ("cheapest (DB + signing)", TEST_COST, counts["cheap"], counts["cheap"]),
        ]:
            service = LoginService(database, key, hasher=PasswordHasher(cost))
            prefix = f"{label[:4]}{uuid.uuid4().hex[:6]}"

            async def register(
                n: int, service: LoginService = service, prefix: str = prefix
            ) -> None:
                await service.register(f"{prefix}{n}", PASSWORD)

            async def login(
                n: int, service: LoginService = service, prefix: str = prefix, n_reg: int = n_reg
            ) -> None:
                await service.login(
                    f"{prefix}{n % n_reg}", PASSWORD, b"device", KEY, None, f"192.0.2.{n % 200}:1"
                )

            seconds = await timed(n_reg, concurrency, register)
            results.append(
                {
                    "operation": "register",
                    "cost": cost_text(cost),
                    "count": n_reg,
                    "seconds": seconds,
                }
            )
            seconds = await timed(n_login, concurrency, login)
            results.append(
                {
                    "operation": "login",
                    "cost": cost_text(cost),
                    "count": n_login,
                    "seconds": seconds,
                }
            )
    finally:
        await database.close()
    for row in results:
        row["per_second"] = row["count"] / row["seconds"]
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = (
        {"register": 8, "login": 16, "cheap": 100}
        if args.quick
        else {"register": 40, "login": 80, "cheap": 1000}
    )
    report: dict[str, Any] = {
        "argon2_production_cost": {
            "type": "argon2id",
            "time_cost": PRODUCTION_COST.time_cost,
            "memory_cost_kib": PRODUCTION_COST.memory_cost_kib,
            "parallelism": PRODUCTION_COST.parallelism,
        },
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "backends": {},
        "skipped": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        report["backends"]["sqlite"] = await bench_backend(f"sqlite:///{tmp}/bench.sqlite3", counts)
    given = args.postgres_url or os.environ.get("HOPLINE_TEST_POSTGRES_URL")
    try:
        with contextlib.ExitStack() as stack:
            server = given or stack.enter_context(throwaway_postgres(durable=True))
            async with fresh_database(server) as url:
                report["backends"]["postgresql"] = await bench_backend(url, counts)
    except PostgresUnavailable as exc:
        report["skipped"]["postgresql"] = str(exc)
    except (OSError, asyncpg.PostgresError) as exc:
        report["skipped"]["postgresql"] = f"cannot use the PostgreSQL server: {exc}"
    return report


def main() -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description="Hopline login-server benchmark")
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--postgres-url", help="postgresql://... to benchmark against")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(f"production Argon2 cost: {cost_text(PRODUCTION_COST)}, {report['cpus']} CPUs")
    rows = [
        [
            backend,
            r["operation"],
            r["cost"],
            r["count"],
            f"{r['seconds']:.2f}",
            f"{r['per_second']:.1f}",
        ]
        for backend, results in report["backends"].items()
        for r in results
    ]
    print_table(
        "login service throughput (no network)",
        ["backend", "operation", "password hash", "count", "seconds", "per second"],
        rows,
    )
    for backend, reason in report["skipped"].items():
        print(f"\n{backend}: skipped: {reason}")
    write_json("loginserver", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
