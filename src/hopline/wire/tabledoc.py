"""Render the command table as Markdown for docs/protocol.md.

``python -m hopline.wire.tabledoc`` prints it; a test checks that the copy in
docs/protocol.md (between the ``command-table`` markers) is current, so the
spec can never drift from the code that implements it.
"""

from __future__ import annotations

from hopline.wire.commands import ErrorReply
from hopline.wire.schema import COMMANDS, Message, Record

HEADER = "| param | name | type | presence | notes |\n|---|---|---|---|---|"


def _presence(required: bool, repeated: bool) -> str:
    if repeated:
        return "repeated, at least one" if required else "repeated"
    return "required" if required else "optional"


def _record_rows(cls: type[Record], nested: list[type[Record]]) -> list[str]:
    rows = []
    for spec in cls.__wire__.fields:
        kind = spec.ptype.name.lower()
        if spec.record is not None:
            kind += f" ({spec.record.__name__})"
            if spec.record not in nested:
                nested.append(spec.record)
        presence = _presence(spec.required, spec.repeated)
        rows.append(f"| {spec.param} | `{spec.name}` | {kind} | {presence} | {spec.doc} |")
    return rows


def command_table_markdown() -> str:
    """The whole table: the command index, then each body and nested record."""
    classes = sorted(COMMANDS.values(), key=lambda c: (c.COMMAND, c.KIND))
    lines = ["| command | kind | name | class |", "|---|---|---|---|"]
    lines += [
        f"| `{c.COMMAND:#06x}` | {c.KIND.name.lower()} | `{c.NAME}` | `{c.__name__}` |"
        for c in classes
    ]
    lines += ["| any | error | `error` | `ErrorReply` |", ""]
    nested: list[type[Record]] = []
    bodies: list[type[Message]] = [*classes, ErrorReply]
    for cls in bodies:
        lines += [f"##### `{cls.__name__}` ({cls.NAME}, {cls.KIND.name.lower()})", "", HEADER]
        lines += [*_record_rows(cls, nested), ""]
    for record in nested:  # grows while we walk it: records nested in records
        lines += [f"##### record `{record.__name__}`", "", HEADER]
        lines += [*_record_rows(record, nested), ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(command_table_markdown(), end="")
