"""``hopline loginserver`` and ``hopline supernode``: the server processes.

A server runs in the foreground, prints one JSON line when it is ready
(``{"ready": true, "listen": ..., ...}``: what ``hopline demo`` and the tests
wait for) and stops cleanly on SIGINT or SIGTERM (a supernode first hands
its records over to the supernodes that take its place). Logs go to stderr,
as text or, with ``--log-format json``, as JSON lines
(:mod:`hopline.runtime.logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from hopline.cli.output import CliError, UsageError, emit_json, stderr
from hopline.client.profile import ProfileError, parse_address, parse_ls_key
from hopline.crypto import CryptoError
from hopline.runtime.endpoint import ConnectError, EndpointError, RequestError
from hopline.runtime.logs import LogFormat, setup_logging
from hopline.runtime.loop import run as run_loop
from hopline.supernode.directory_service import REPLICATION
from hopline.supernode.handover import HANDOVER_TIMEOUT_S
from hopline.wire import Address

loginserver_app = typer.Typer(
    help="Run the login server, or manage its key and enrollment tokens.",
    invoke_without_command=True,
)

DataDirOption = Annotated[
    Path, typer.Option("--data-dir", help="where the key and the SQLite database live")
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="sqlite:///path (default DATA_DIR/accounts.sqlite3) or postgresql://..."
    ),
]


LogFormatOption = Annotated[
    LogFormat,
    typer.Option("--log-format", help="stderr log lines: text, or JSON objects (one per line)"),
]


async def wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve_login(listen: str, data_dir: Path, db: str | None) -> None:
    # server stacks load inside the commands that run them: other commands start fast
    from hopline.loginserver.db import DatabaseError
    from hopline.loginserver.server import LoginServer

    try:
        address = parse_address(listen, "--listen")
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    try:
        server = await LoginServer.start(address, data_dir, db)
    except (DatabaseError, OSError, CryptoError) as exc:
        raise CliError(f"login server cannot start: {exc}") from None
    try:
        emit_json(server.ready_report())
        listening = str(Address.of(*server.address))
        log = logging.getLogger("hopline.loginserver")
        log.info("ready on %s", listening, extra={"listen": listening})
        await wait_for_signal()
    finally:
        await server.close()


@loginserver_app.callback()
def loginserver(
    ctx: typer.Context,
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT (port 0: any)")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = Path("loginserver-data"),
    log_format: LogFormatOption = LogFormat.TEXT,
) -> None:
    """Run the login server in the foreground (Ctrl-C or SIGTERM stops it)."""
    if ctx.invoked_subcommand is not None:
        return
    if listen is None:
        raise UsageError("hopline loginserver needs --listen HOST:PORT")
    setup_logging(log_format)
    run_loop(_serve_login(listen, data_dir, db))


@loginserver_app.command("key")
def key_command(data_dir: DataDirOption = Path("loginserver-data")) -> None:
    """Print the public key that clients and supernodes pin (creates it if new)."""
    from hopline.loginserver.server import load_or_create_keys, public_key_text

    try:
        keys, created = load_or_create_keys(data_dir)
    except (CryptoError, OSError) as exc:
        raise CliError(f"cannot read the key in {data_dir}: {exc}") from None
    if created:
        stderr.print(f"created a new login-server key in {data_dir}")
    sys.stdout.write(public_key_text(keys) + "\n")


async def _enroll(data_dir: Path, db: str | None, ttl: float) -> str:
    from hopline.loginserver.db import Database
    from hopline.loginserver.server import default_db_url, load_or_create_keys
    from hopline.loginserver.service import LoginService

    keys, _ = load_or_create_keys(data_dir)
    database = await Database.open(db or default_db_url(data_dir))
    try:
        service = LoginService(database, keys.signing.private_key)
        return await service.create_enrollment_token(time.time(), ttl)
    finally:
        await database.close()


@loginserver_app.command("enroll")
def enroll_command(
    data_dir: DataDirOption = Path("loginserver-data"),
    db: DbOption = None,
    ttl: Annotated[
        float, typer.Option("--ttl", help="seconds the token stays valid", min=60)
    ] = 86400,
) -> None:
    """Print a one-time token with which a new supernode enrolls."""
    from hopline.loginserver.db import DatabaseError

    try:
        token = run_loop(_enroll(data_dir, db, ttl))
    except (DatabaseError, CryptoError, OSError) as exc:
        raise CliError(f"cannot create a token: {exc}") from None
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(token + "\n")


@dataclass(frozen=True)
class SupernodeOptions:
    """The command line of ``hopline supernode``, as given."""

    listen: str
    login_server: str
    ls_key: str
    data_dir: Path
    token: str | None
    public_address: str | None
    join: list[str]
    metrics: str | None
    replication: int
    handover_timeout: float
    stun_alt_port: int | None = None


async def _serve_supernode(options: SupernodeOptions) -> None:
    from hopline.supernode.node import Supernode, SupernodeError

    try:
        address = parse_address(options.listen, "--listen")
        ls_address = parse_address(options.login_server, "--login-server")
        key = parse_ls_key(options.ls_key)
        public = (
            parse_address(options.public_address, "--public-address")
            if options.public_address
            else None
        )
        seeds = [parse_address(seed, "--join") for seed in options.join]
        metrics_at = parse_address(options.metrics, "--metrics") if options.metrics else None
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    try:
        node = await Supernode.start(
            address,
            ls_address,
            key,
            options.data_dir,
            token=options.token,
            public_address=public,
            join=seeds,
            metrics=metrics_at,
            replication=options.replication,
            handover_timeout=options.handover_timeout,
            stun_alt_port=options.stun_alt_port,
        )
    except SupernodeError as exc:
        raise UsageError(str(exc)) from None
    except (ConnectError, RequestError, EndpointError) as exc:
        raise CliError(f"supernode cannot get its certificate: {exc}") from None
    except (OSError, CryptoError) as exc:
        raise CliError(f"supernode cannot start: {exc}") from None
    try:
        emit_json(node.ready_report())
        listening = str(Address.of(*node.address))
        log = logging.getLogger("hopline.supernode")
        log.info("ready on %s", listening, extra={"listen": listening, "node_id": node.node_id})
        await wait_for_signal()
    finally:
        await node.close()


def supernode_command(
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT (port 0: any)")],
    login_server: Annotated[str, typer.Option("--login-server", help="login server HOST:PORT")],
    ls_key: Annotated[str, typer.Option("--ls-key", help="the login server's public key")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="keys and certificate")] = Path(
        "supernode-data"
    ),
    enroll_token: Annotated[
        str | None, typer.Option("--enroll-token", help="one-time token for the first start")
    ] = None,
    public_address: Annotated[
        str | None, typer.Option("--public-address", help="HOST:PORT clients should use")
    ] = None,
    join: Annotated[
        list[str] | None, typer.Option("--join", help="a supernode to join through (repeatable)")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="serve Prometheus metrics on HOST:PORT")
    ] = None,
    replication: Annotated[
        int,
        typer.Option(
            "--replication", min=1, help="owners of each directory slot (same on every supernode)"
        ),
    ] = REPLICATION,
    handover_timeout: Annotated[
        float,
        typer.Option(
            "--handover-timeout",
            min=0.0,
            help="seconds a stopping supernode spends handing its records over",
        ),
    ] = HANDOVER_TIMEOUT_S,
    stun_alt_port: Annotated[
        int | None,
        typer.Option(
            "--stun-alt-port",
            min=0,
            max=65535,
            help="STUN alternate UDP port (default: the main port + 1; 0: none)",
        ),
    ] = None,
    log_format: LogFormatOption = LogFormat.TEXT,
) -> None:
    """Run a supernode in the foreground (Ctrl-C or SIGTERM: hand records over, then stop)."""
    setup_logging(log_format)
    options = SupernodeOptions(
        listen,
        login_server,
        ls_key,
        data_dir,
        enroll_token,
        public_address,
        join or [],
        metrics,
        replication,
        handover_timeout,
        stun_alt_port,
    )
    run_loop(_serve_supernode(options))
