"""``hopline wire decode|encode``: a dissector for people debugging the protocol."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from hopline.cli.output import UsageError, emit_json, stdout
from hopline.wire import WireError, dissect, encode, message_from_json

app = typer.Typer(help="Dissect and build wire messages (JSON in and out).", no_args_is_help=True)


def _read_argument(value: str) -> str:
    return sys.stdin.read() if value == "-" else value


def parse_hex(text: str) -> bytes:
    """Bytes from hex text; spaces, colons and a ``0x`` prefix are allowed."""
    cleaned = "".join(text.split()).replace(":", "")
    cleaned = cleaned.removeprefix("0x")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise UsageError(f"not hex: {text.strip()[:40]!r}") from None


def _rows(table: Table, objects: list[dict[str, Any]], indent: str = "") -> None:
    for obj in objects:
        value = obj["value"]
        shown = "" if obj["type"] == "objects" else json.dumps(value)
        name = obj["name"] or "(unknown)"
        table.add_row(
            str(obj["offset"]),
            str(obj["size"]),
            f"{indent}{obj['param']}",
            name,
            obj["type"],
            shown,
        )
        if obj["type"] == "objects":
            _rows(table, value, indent + "  ")


def _show(doc: dict[str, Any]) -> None:
    title = (
        f"{doc.get('command', '?')} ({doc['command_id']:#06x}) {doc['kind']}"
        f" request_id={doc['request_id']} size={doc['size']}"
    )
    table = Table(title=title, title_justify="left")
    for column in ("offset", "size", "param", "name", "type", "value"):
        table.add_column(column)
    _rows(table, doc["objects"])
    stdout.print(table)


@app.command("decode")
def decode_command(
    data: Annotated[str, typer.Argument(metavar="HEX|-", help="message bytes in hex, - for stdin")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Dissect one message: header, typed fields, and every object with its offset.

    A message whose layout parses but that breaks the command table (unknown
    command, missing parameter) is still shown, and the command exits 2.
    """
    raw = parse_hex(_read_argument(data))
    try:
        doc = dissect(raw)
    except WireError as exc:
        raise UsageError(f"cannot decode: {exc.reason}: {exc}") from None
    if as_json:
        emit_json(doc)
    else:
        _show(doc)
    if "error" in doc:  # the layout parsed, but it is not a valid message: show, then fail
        raise UsageError(f"not a valid {doc.get('command', 'message')}: {doc['error']}")


@app.command("encode")
def encode_command(
    document: Annotated[str, typer.Argument(metavar="JSON|-", help="message as JSON, - for stdin")],
) -> None:
    """Build a message from JSON (the form ``wire decode --json`` prints) and print its hex."""
    text = _read_argument(document)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    try:
        data = encode(message_from_json(parsed))
    except WireError as exc:
        raise UsageError(f"cannot encode: {exc}") from None
    except TypeError as exc:  # a field given a value of the wrong shape
        raise UsageError(f"cannot encode: {exc}") from None
    sys.stdout.write(data.hex() + "\n")
