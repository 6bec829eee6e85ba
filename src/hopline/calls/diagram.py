"""Render the call state table as a Mermaid diagram and a Markdown table.

Both renderings are computed from :data:`hopline.calls.state.TRANSITIONS` and
:data:`hopline.calls.state.END_REASONS` and nothing else, so ``docs/calls.md``
can be checked against the code by a test: when the table changes, rerun

    python -m hopline.calls.diagram            # the Mermaid stateDiagram-v2
    python -m hopline.calls.diagram --table    # the Markdown table

and paste the output between the markers in ``docs/calls.md``. Edges that
exist for both roles carry a bare event name; role-specific ones are suffixed
``(caller)`` or ``(callee)``. Several events between the same two states share
one edge, their labels joined by commas.
"""

from __future__ import annotations

import sys

from hopline.calls.state import END_REASONS, TRANSITIONS, CallRole, CallState, Event

__all__ = ["render_mermaid", "render_table"]

_Edge = tuple[CallState, CallState]


def _labels() -> dict[_Edge, list[str]]:
    """Group the table's rows into edges, each with its event labels in table order."""
    roles: dict[tuple[CallState, type[Event], CallState], list[CallRole]] = {}
    for (role, state, event), target in TRANSITIONS.items():
        roles.setdefault((state, event, target), []).append(role)
    edges: dict[_Edge, list[str]] = {}
    for (state, event, target), who in roles.items():
        name = event.__name__
        label = name if len(who) == len(CallRole) else f"{name} ({who[0].value})"
        edges.setdefault((state, target), []).append(label)
    return edges


def render_mermaid() -> str:
    """Return the state diagram as Mermaid ``stateDiagram-v2`` source."""
    lines = ["stateDiagram-v2", f"    [*] --> {CallState.IDLE.name}"]
    for (state, target), labels in _labels().items():
        lines.append(f"    {state.name} --> {target.name}: {', '.join(labels)}")
    lines.append(f"    {CallState.ENDED.name} --> [*]")
    return "\n".join(lines) + "\n"


def render_table() -> str:
    """Return every row of the table as Markdown (role, state, event, next, reason)."""
    lines = [
        "| role | state | event | next state | end reason |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, target in TRANSITIONS.items():
        role, state, event = key
        reason = END_REASONS.get(key)
        lines.append(
            f"| {role.value} | {state.name} | `{event.__name__}` | {target.name} "
            f"| {reason.value if reason else ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Print the diagram, or the table with ``--table``."""
    sys.stdout.write(render_table() if "--table" in argv else render_mermaid())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
