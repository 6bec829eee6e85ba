"""Client commands served by the daemon: ``status``, ``search``, ``profile``, ``presence``.

Each command is one SDK call (:func:`~hopline.cli.daemon.call_daemon`) plus
its rendering: ``--json`` prints the API's document as is, otherwise a rich
table or a line on stdout.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hopline.api import models as m
from hopline.cli.common import JsonOption, ProfileOption
from hopline.cli.daemon import call_daemon
from hopline.cli.output import UsageError, emit_json, human

profile_app = typer.Typer(help="Your public (white pages) profile.", no_args_is_help=True)
presence_app = typer.Typer(help="Your status and mood.", no_args_is_help=True)


class SearchBy(StrEnum):
    """What ``hopline search`` matches."""

    ANY = "any"
    HANDLE = "handle"
    NAME = "name"
    CITY = "city"
    COUNTRY = "country"
    LANGUAGE = "language"


class Status(StrEnum):
    """What ``hopline presence set`` accepts."""

    ONLINE = "online"
    AWAY = "away"
    DND = "dnd"
    INVISIBLE = "invisible"


def _ago(unix: int | float | None) -> str:
    if not unix:
        return "-"
    seconds = max(0, int(time.time() - unix))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def status_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Who you are, which supernode you use, your public address and presence."""
    status = call_daemon(profile, lambda client: client.status())
    if as_json:
        emit_json(status.model_dump())
        return
    table = Table(show_header=False, box=None)
    home = status.supernode
    rows: list[tuple[str, Any]] = [
        ("user", status.user or "not logged in"),
        ("state", status.state),
        ("supernode", f"{home.name} at {home.address} over {home.transport}" if home else "-"),
        ("rtt", f"{home.rtt_ms} ms" if home and home.rtt_ms is not None else "-"),
        ("public address", status.public_address or "-"),
        ("NAT", status.nat),
        ("presence", _presence_text(status.presence)),
        ("host cache", status.host_cache if status.host_cache is not None else "-"),
        ("re-homed", status.rehomes),
    ]
    if status.last_error:
        rows.append(("last error", status.last_error))
    for name, value in rows:
        table.add_row(f"[bold]{name}[/]", escape(str(value)))
    human(False).print(table)


def _presence_text(presence: m.Presence) -> str:
    return f"{presence.status}" + (f" — {presence.mood}" if presence.mood else "")


def search_command(
    query: Annotated[str, typer.Argument(help="a handle, name words, city, country or language")],
    by: Annotated[SearchBy, typer.Option("--by", help="what to match")] = SearchBy.ANY,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="results per page")] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next page's cursor")] = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the white pages (or look a handle up)."""
    started = time.perf_counter()
    found = call_daemon(profile, lambda client: client.search(query, by.value, limit, cursor))
    ms = round((time.perf_counter() - started) * 1000, 1)
    if as_json:
        emit_json({**found.model_dump(), "ms": ms})
        return
    out = human(False)
    if not found.results:
        out.print(escape(f"no one found for {query!r} ({ms} ms)"))
        return
    table = Table("user", "name", "city", "country", "lang", "presence", title=None)
    for hit in found.results:
        cells = (hit.username, hit.full_name, hit.city, hit.country, hit.language)
        presence = _hit_presence(hit)
        table.add_row(*(escape(cell or "") for cell in (*cells, presence)))  # peers' own text
    out.print(table)
    more = f"; next page: --cursor {found.next_cursor}" if found.next_cursor else ""
    out.print(f"{len(found.results)} found in {ms} ms{more}")


def _hit_presence(hit: m.UserHit) -> str:
    if hit.state is None:
        return ""
    if hit.state == "offline":
        return f"offline, last seen {_ago(hit.last_seen)}"
    mood = f" — {hit.mood}" if hit.mood else ""
    return f"{hit.status or hit.state}{mood}"


@profile_app.command("set")
def profile_set_command(
    full_name: Annotated[str | None, typer.Option("--full-name")] = None,
    city: Annotated[str | None, typer.Option("--city")] = None,
    country: Annotated[str | None, typer.Option("--country", help="ISO 3166 code")] = None,
    language: Annotated[str | None, typer.Option("--language", help="ISO 639-1 code")] = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change public profile fields ("" clears one) and publish them."""
    given = {"full_name": full_name, "city": city, "country": country, "language": language}
    fields = {name: value for name, value in given.items() if value is not None}
    if not fields:
        raise UsageError("nothing to set: give --full-name, --city, --country or --language")
    result = call_daemon(profile, lambda client: client.set_profile(**fields))
    _print_profile(result, as_json)


@profile_app.command("show")
def profile_show_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Show your public profile fields."""
    _print_profile(call_daemon(profile, lambda client: client.profile()), as_json)


def _print_profile(result: m.PublicProfile, as_json: bool) -> None:
    if as_json:
        emit_json(result.model_dump())
        return
    table = Table(show_header=False, box=None)
    for name, value in result.model_dump().items():
        table.add_row(f"[bold]{name.replace('_', ' ')}[/]", escape(value or "-"))
    human(False).print(table)


@presence_app.command("set")
def presence_set_command(
    status: Annotated[Status, typer.Argument(help="online, away, dnd or invisible")],
    mood: Annotated[str | None, typer.Option("--mood", help="a short text others see")] = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set your status and mood (published at once)."""
    if mood is not None and len(mood) > 200:
        raise UsageError("--mood: at most 200 characters")
    result = call_daemon(profile, lambda client: client.set_presence(status.value, mood))
    if as_json:
        emit_json(result.model_dump())
    else:
        human(False).print(escape(f"presence: {_presence_text(result)}"))
