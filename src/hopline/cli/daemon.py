"""``hopline up`` and ``hopline down``: start and stop a profile's daemon.

Also the plumbing every daemon-backed command uses: :func:`call_daemon` runs
one SDK call against the profile's daemon and turns API errors into the CLI's
one-line errors (``bad-input`` exits 2, the rest 1), with a hint to run
``hopline up`` when no daemon is there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from hopline.cli.common import (
    DEFAULT_PROFILE,
    JsonOption,
    LoginServerOption,
    LsKeyOption,
    ProfileOption,
    open_profile,
)
from hopline.cli.output import CliError, UsageError, emit_json, stderr
from hopline.client.profile import Profile, ProfileError, parse_address
from hopline.runtime.logs import LogFormat, setup_logging
from hopline.runtime.loop import run as run_loop
from hopline.sdk import Client, DaemonNotRunning, HoplineError

T = TypeVar("T")
BAD_INPUT_CODES = {"bad-input"}


def profile_path(profile: Path | None) -> Path:
    """The profile directory a command acts on."""
    return (profile or DEFAULT_PROFILE).expanduser()


def call_daemon(profile: Path | None, call: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``call`` against the daemon of ``profile``; API errors become CLI errors."""
    path = profile_path(profile)

    async def go() -> T:
        async with Client.for_profile(path) as client:
            return await call(client)

    try:
        return run_loop(go())
    except DaemonNotRunning:
        raise CliError(
            f"no hopline daemon is running for profile {path}: start it with "
            f"'hopline up --profile {path}' (first time: add --login-server HOST:PORT --ls-key KEY)"
        ) from None
    except HoplineError as exc:
        hint = f" (retry in {exc.retry_after_ms / 1000:.0f} s)" if exc.retry_after_ms else ""
        raise CliError(f"{exc}{hint}", 2 if exc.code in BAD_INPUT_CODES else 1) from None


def daemon_running(profile: Path | None) -> bool:
    """True when a daemon serves ``profile``."""
    try:
        Client.for_profile(profile_path(profile))
    except DaemonNotRunning:
        return False
    return True


def _seed_bootstrap(prof: Profile, bootstrap: list[str]) -> None:
    from hopline.client.hostcache import HostCache, Source

    try:
        addresses = [parse_address(text, "--bootstrap") for text in bootstrap]
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    known = list(prof.config.get("bootstrap", []))
    prof.config["bootstrap"] = list(dict.fromkeys(known + [str(a) for a in addresses]))
    prof.save_config()
    cache = HostCache.in_profile(prof.path)
    cache.merge(addresses, Source.MANUAL, time.time())
    cache.save()


def up_command(
    profile: ProfileOption = None,
    login_server: LoginServerOption = None,
    ls_key: LsKeyOption = None,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option("--bootstrap", help="a supernode HOST:PORT to start from (repeatable)"),
    ] = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="bind UDP and TCP on HOST:PORT for peers")
    ] = None,
    api: Annotated[
        str, typer.Option("--api", help="serve the local API on 127.0.0.1:PORT (0: any)")
    ] = "127.0.0.1:0",
    fallback_port: Annotated[
        list[int] | None,
        typer.Option(
            "--fallback-port",
            min=1,
            max=65535,
            help="also try supernodes over TCP on this port, e.g. 443 (repeatable)",
        ),
    ] = None,
    log_format: Annotated[
        LogFormat,
        typer.Option("--log-format", help="stderr log lines: text, or JSON objects (one per line)"),
    ] = LogFormat.TEXT,
    relay_only: Annotated[
        bool,
        typer.Option(
            "--relay-only",
            help="reach peers only through supernode relays (peers never learn your address)",
        ),
    ] = False,
) -> None:
    """Run this profile's node in the foreground and serve the local API.

    When it serves, it prints one JSON line on stdout (``{"ready": true, "api": ...}``).
    """
    # the daemon's stack (ASGI server, sessions) loads only here: other commands start fast
    from hopline.api.server import ApiAddressError, check_loopback
    from hopline.client.race import RaceConfig
    from hopline.client.session import SessionConfig
    from hopline.daemon.files import AlreadyRunning
    from hopline.daemon.node import DaemonConfig
    from hopline.daemon.run import Ready, run_daemon
    from hopline.path.manager import PathConfig

    try:
        api_at = parse_address(api, "--api")
        check_loopback(str(api_at.host))
        bind = parse_address(listen, "--listen") if listen else None
    except (ProfileError, ApiAddressError) as exc:
        raise UsageError(str(exc)) from None
    prof = open_profile(profile, login_server, ls_key)
    try:
        prof.login_server  # noqa: B018 -- both must be pinned before going online
        prof.ls_key  # noqa: B018
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    _seed_bootstrap(prof, bootstrap or [])
    setup_logging(log_format)

    def ready(info: Ready) -> None:
        doc = {"ready": True, "role": "daemon", "api": info.api, "profile": info.profile}
        emit_json({**doc, "user": info.user, "pid": os.getpid()})
        who = info.user or "nobody (run 'hopline login USER')"
        stderr.print(f"hopline daemon up for {who}: API {info.api}, profile {info.profile}")

    race = RaceConfig(alternate_ports=tuple(fallback_port or ()))
    paths = PathConfig(direct=not relay_only)
    config = DaemonConfig(session=SessionConfig(listen=bind, race=race), paths=paths)
    try:
        run_loop(run_daemon(prof, str(api_at.host), api_at.port, config, on_ready=ready))
    except AlreadyRunning as exc:
        raise CliError(str(exc)) from None
    except ApiAddressError as exc:
        raise UsageError(f"--api: {exc}") from None
    except OSError as exc:
        raise CliError(f"the daemon cannot start: {exc.strerror or exc}") from None


def down_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Stop this profile's daemon (it leaves the network cleanly)."""
    call_daemon(profile, lambda client: client.shutdown())
    if as_json:
        emit_json({"stopping": True})
    else:
        stderr.print("the daemon is stopping")
