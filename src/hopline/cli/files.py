"""File transfer through the daemon: ``hopline send-file`` and ``hopline files ...``.

The daemon moves the bytes; these commands offer a file, take or refuse one
offered, and follow a transfer. Following is a long-poll loop on the API
(``GET /v1/files/{id}/wait`` with a one-second timeout): each answer is
either the final document or the current progress, which feeds a rich
progress bar on stderr (bytes, rate, time left). ``send-file`` follows its
transfer to the end unless ``--no-wait``, and so does ``files accept
--wait``. The outcome is one report on stdout (a line, or with ``--json``
exactly the transfer's JSON document):

* complete: exit 0;
* declined, failed or cancelled: exit 1 with a one-line reason;
* Ctrl-C (or SIGTERM): the transfer is cancelled first, then the report,
  then exit 130 (143).

Paths are checked and made absolute before the daemon is contacted (it runs
in another directory): a missing file or directory is a usage error (exit 2).
A transfer id may be given by its start, as ``hopline files`` shows it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from hopline.api import models as m
from hopline.cli.calls import Interrupt
from hopline.cli.chat import checked_user
from hopline.cli.common import JsonOption, ProfileOption, checked_path_length
from hopline.cli.daemon import call_daemon
from hopline.cli.output import CliError, UsageError, emit_json, human, stderr
from hopline.sdk import Client, HoplineError

files_app = typer.Typer(help="File transfers: offers, progress, downloads.", no_args_is_help=True)

REFRESH_S = 1.0  # one progress update a second
FULL_ID_CHARS = 32  # a transfer id is 16 bytes
SHORT_ID_CHARS = 8  # as ``hopline files`` shows it
ID_START = re.compile(r"[0-9a-fA-F]{1,32}")
STATE_TEXT = {
    "waiting": "waiting for {peer} to accept",
    "offered": "offered by {peer}",
    "transferring": "{verb} {peer}",
    "verifying": "checking with {peer}",
    "interrupted": "path to {peer} lost: resuming",
}

IdArgument = Annotated[str, typer.Argument(help="the transfer id, or its start")]


# ---------------------------------------------------------------- arguments


def checked_file(path: Path) -> str:
    """An existing regular file, as an absolute path; else a UsageError."""
    full = path.expanduser().absolute()
    if not full.is_file():
        raise UsageError(f"PATH: no such file: {path}")
    return checked_path_length("PATH", full)


def checked_directory(path: Path) -> str:
    """An existing directory, as an absolute path; else a UsageError."""
    full = path.expanduser().absolute()
    if not full.is_dir():
        raise UsageError(f"--to: no such directory: {path}")
    return checked_path_length("--to", full)


def checked_transfer_id(given: str) -> str:
    """``given`` (or the start of an id) if it is hex digits, else a UsageError."""
    if not ID_START.fullmatch(given):
        raise UsageError(f"not a transfer id: {given!r} (hex digits, as 'hopline files' shows)")
    return given.lower()


async def resolve_transfer_id(client: Client, given: str) -> str:
    """The one transfer id starting with ``given`` (live transfers first)."""
    if len(given) == FULL_ID_CHARS:
        return given
    matches = [t for t in await client.transfers() if t.transfer_id.startswith(given)]
    chosen = [t for t in matches if not t.ended] or matches
    if not chosen:
        raise CliError(f"no transfer id starts with {given} (see 'hopline files list')")
    if len(chosen) > 1:
        raise UsageError(f"{given} is the start of {len(chosen)} transfer ids: give more digits")
    return chosen[0].transfer_id


# ---------------------------------------------------------------- following


def state_text(transfer: m.Transfer) -> str:
    """What the transfer is doing now, in a few words."""
    verb = "sending to" if transfer.direction == "outgoing" else "receiving from"
    template = STATE_TEXT.get(transfer.state, "{state}")
    return template.format(peer=transfer.peer, verb=verb, state=transfer.state)


class ProgressBar:
    """The transfer's bar on stderr: state, bytes, rate, time left."""

    def __init__(self, transfer: m.Transfer) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr,
        )
        self._task: TaskID = self._progress.add_task(
            escape(transfer.name), total=transfer.size or 1
        )

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def show(self, transfer: m.Transfer) -> None:
        """Move the bar to ``transfer``'s progress."""
        description = escape(f"{transfer.name}: {state_text(transfer)}")
        self._progress.update(self._task, completed=transfer.bytes, description=description)


async def follow(client: Client, transfer: m.Transfer) -> tuple[m.Transfer, int]:
    """Follow ``transfer`` until it ends; its last document, and the signal that stopped it."""
    interrupt = Interrupt()
    with interrupt.installed(), ProgressBar(transfer) as bar:
        while not transfer.ended:
            bar.show(transfer)
            polled = await interrupt.unless(client.wait_file(transfer.transfer_id, REFRESH_S))
            if polled is None:
                return await _cancel(client, transfer), interrupt.signum
            transfer = polled
        bar.show(transfer)
    return transfer, 0


async def _cancel(client: Client, transfer: m.Transfer) -> m.Transfer:
    try:
        return await client.cancel_file(transfer.transfer_id)
    except HoplineError as exc:
        if exc.code not in {"not-found", "refused"}:
            raise
        return transfer  # gone or over already: the last document is what there is


# ---------------------------------------------------------------- reports


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{count} B"


def report_line(transfer: m.Transfer) -> str:
    """One line saying how the transfer stands or ended."""
    name, peer = transfer.name, transfer.peer
    if transfer.state == "complete":
        if transfer.direction == "incoming":
            return f"received {name} ({_size(transfer.size)}) from {peer}: {transfer.saved_to}"
        return f"sent {name} ({_size(transfer.size)}) to {peer}, sha256 {transfer.sha256}"
    if transfer.ended:
        return f"{name} with {peer}: {transfer.state}{_why(transfer)}"
    return f"{name}: {state_text(transfer)}, transfer {transfer.transfer_id}"


def finish(transfer: m.Transfer, as_json: bool, stopped_by: int = 0) -> None:
    """Print the report; fail (exit 1, or 128+signal) unless the transfer is complete or live."""
    if as_json:
        emit_json(transfer.model_dump())
    else:
        human(False).print(escape(report_line(transfer)), soft_wrap=True)
    if stopped_by:
        raise CliError(
            f"interrupted: the transfer of {transfer.name} was cancelled", 128 + stopped_by
        )
    if transfer.state == "declined":
        raise CliError(f"the transfer of {transfer.name} was declined by {transfer.peer}")
    if transfer.ended and transfer.state != "complete":
        raise CliError(f"the transfer of {transfer.name} {transfer.state}{_why(transfer)}")


def _why(transfer: m.Transfer) -> str:
    """`` (reason: detail)`` when the document says more than its state."""
    said = [
        text
        for text in dict.fromkeys((transfer.end_reason or "", transfer.detail))
        if text and text != transfer.state
    ]
    return f" ({': '.join(said)})" if said else ""


# ---------------------------------------------------------------- commands


def send_file_command(
    peer: Annotated[str, typer.Argument(help="the user to send to")],
    path: Annotated[Path, typer.Argument(help="the file to send")],
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="return once offered, without following")
    ] = False,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a file to a user; shows progress and waits until it is over (Ctrl-C cancels)."""
    checked_user(peer, "PEER")
    source = checked_file(path)

    async def send(client: Client) -> tuple[m.Transfer, int]:
        offered = await client.send_file(peer, source)
        if no_wait:
            return offered, 0
        return await follow(client, offered)

    transfer, stopped_by = call_daemon(profile, send)
    finish(transfer, as_json, stopped_by)


def _print_transfers(transfers: list[m.Transfer], as_json: bool) -> None:
    if as_json:
        emit_json({"transfers": [transfer.model_dump() for transfer in transfers]})
        return
    out = human(False)
    if not transfers:
        out.print("no transfers")
        return
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold")
    for column in ("id", "", "peer", "name", "state"):
        table.add_column(column, no_wrap=True)
    for column in ("size", "done", "rate"):
        table.add_column(column, justify="right", no_wrap=True)
    for transfer in transfers:
        table.add_row(*(escape(cell) for cell in _row(transfer)))
    out.print(table)
    out.print("ids are shortened: 'hopline files accept ID' takes the start of one")


def _row(transfer: m.Transfer) -> tuple[str, ...]:
    done = 100 * transfer.bytes / transfer.size if transfer.size else 100.0
    rate = f"{_size(transfer.rate_bps)}/s" if transfer.rate_bps else "-"
    return (
        transfer.transfer_id[:SHORT_ID_CHARS],
        "out" if transfer.direction == "outgoing" else "in",
        transfer.peer,
        transfer.name,
        transfer.state,
        _size(transfer.size),
        f"{done:.0f} %",
        rate,
    )


@files_app.command("list")
def files_list_command(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Live transfers, files offered to you, and recently finished ones."""
    _print_transfers(call_daemon(profile, lambda client: client.transfers()), as_json)


@files_app.command("accept")
def files_accept_command(
    transfer_id: IdArgument,
    to: Annotated[
        Path | None, typer.Option("--to", help="save into this directory (default: downloads)")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="show progress and wait until it is over")
    ] = False,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take a file offered to you."""
    given = checked_transfer_id(transfer_id)
    to_dir = checked_directory(to) if to is not None else None

    async def accept(client: Client) -> tuple[m.Transfer, int]:
        accepted = await client.accept_file(await resolve_transfer_id(client, given), to_dir)
        return await follow(client, accepted) if wait else (accepted, 0)

    transfer, stopped_by = call_daemon(profile, accept)
    finish(transfer, as_json, stopped_by)


@files_app.command("decline")
def files_decline_command(
    transfer_id: IdArgument, profile: ProfileOption = None, as_json: JsonOption = False
) -> None:
    """Refuse a file offered to you."""
    given = checked_transfer_id(transfer_id)

    async def decline(client: Client) -> m.Transfer:
        return await client.decline_file(await resolve_transfer_id(client, given))

    transfer = call_daemon(profile, decline)
    if as_json:
        emit_json(transfer.model_dump())
        return
    human(False).print(escape(f"declined {transfer.name} from {transfer.peer}"), soft_wrap=True)


@files_app.command("cancel")
def files_cancel_command(
    transfer_id: IdArgument, profile: ProfileOption = None, as_json: JsonOption = False
) -> None:
    """Stop a transfer in either direction."""
    given = checked_transfer_id(transfer_id)

    async def cancel(client: Client) -> m.Transfer:
        return await client.cancel_file(await resolve_transfer_id(client, given))

    transfer = call_daemon(profile, cancel)
    if as_json:
        emit_json(transfer.model_dump())
        return
    human(False).print(escape(f"cancelled {transfer.name} with {transfer.peer}"), soft_wrap=True)
