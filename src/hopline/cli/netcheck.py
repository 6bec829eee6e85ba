"""``hopline netcheck``: what this network lets Hopline do (NAT type, UDP, TCP, IPv6).

When the profile's daemon runs and no ``--server`` is given, the daemon
checks (``POST /v1/netcheck``: against its home and the supernodes it
knows, from the socket its peers see). Otherwise this command runs
:func:`hopline.nat.netcheck.run_netcheck` itself against supernodes' STUN
ports: those given with ``--server`` (repeatable), else the profile's host
cache, else the supernodes the login server hands out (the profile's
bootstrap list, asked afresh when the profile has none). Prints a table, or
exactly one JSON document with ``--json`` (docs/netcheck.md lists its
fields). Bad arguments: one line and exit code 2.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hopline.cli.common import DEFAULT_PROFILE, JsonOption, ProfileOption, run_network
from hopline.cli.daemon import call_daemon, daemon_running
from hopline.cli.output import UsageError, emit_json, human
from hopline.client.profile import Profile, ProfileError, parse_address
from hopline.wire import Address

MAX_SERVERS = 4


def netcheck_command(
    server: Annotated[
        list[str] | None,
        typer.Option("--server", help="a supernode HOST:PORT to test against (repeatable)"),
    ] = None,
    profile: ProfileOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1.0, max=300.0, help="seconds for the whole check")
    ] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Find out how this host's NAT behaves (mapping, filtering, UDP, TCP, IPv6)."""
    from hopline.nat.netcheck import run_netcheck

    if not server and daemon_running(profile):
        found = call_daemon(profile, lambda client: client.netcheck(fresh=True))
        _show(found.model_dump(exclude={"checked_at"}), as_json)
        return
    servers = _servers(server or [], profile)
    report = run_network(run_netcheck(servers, timeout=timeout), "netcheck")
    _show({**report.to_json(), "servers": [str(s) for s in servers]}, as_json)


def _show(document: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(document)
    else:
        _print_table(document)


def _servers(given: list[str], profile_dir: Path | None) -> list[Address]:
    if given:
        try:
            return [parse_address(text, "--server") for text in given]
        except ProfileError as exc:
            raise UsageError(str(exc)) from None
    path = profile_dir or DEFAULT_PROFILE
    if not path.exists():
        raise UsageError(
            f"no supernodes to test against: give --server HOST:PORT (no profile {path})"
        )
    found = _from_profile(path)
    if not found:
        raise UsageError("no supernodes known: give --server HOST:PORT, or log in first")
    return found[:MAX_SERVERS]


def _from_profile(path: Path) -> list[Address]:
    from hopline.client import account
    from hopline.client.hostcache import HostCache

    cached = HostCache.in_profile(path).candidates(time.time(), include_backed_off=True)
    if cached:
        return cached
    try:
        profile = Profile.open(path, create=False)
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    known = list(profile.config.get("bootstrap", []))
    if not known and profile.config.get("login_server"):
        known = run_network(account.bootstrap(profile), "bootstrap")
    try:
        return [parse_address(text) for text in known]
    except ProfileError as exc:
        raise UsageError(f"profile bootstrap list: {exc}") from None


def _print_table(doc: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    yes_no = {True: "yes", False: "no", None: "-"}
    rows = [
        ("UDP", yes_no[doc["udp"]]),
        ("TCP", yes_no[doc["tcp"]]),
        ("NAT type", f"{doc['nat_type']} (class {doc['nat_class']})"),
        ("mapping", doc["mapping"]),
        ("filtering", doc["filtering"]),
        ("public address", doc["public_address"] or "-"),
        ("port preserved", yes_no[doc["port_preserving"]]),
        ("IPv6", yes_no[doc["ipv6"]]),
        ("public IPv6", doc["public_address6"] or "-"),
        ("local", ", ".join(doc["local_addresses"]) or "-"),
        ("upload", _rate(doc.get("upload_bps"))),
    ]
    rows += [(f"rtt {server}", f"{ms} ms") for server, ms in doc["rtt_ms"].items()]
    for name, value in rows:
        table.add_row(f"[bold]{name}[/]", escape(str(value)))  # "[::1]:4" is not markup
    human(False).print(table)


def _rate(bps: int | None) -> str:
    """An upload estimate for people: ``12.3 Mbit/s`` (``-`` when not measured)."""
    return "-" if bps is None else f"{bps / 1e6:.1f} Mbit/s"
