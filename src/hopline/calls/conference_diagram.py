"""Render the conference state table as a Mermaid diagram and a Markdown table.

Both renderings are computed from :data:`hopline.calls.conference.TRANSITIONS`
and :data:`hopline.calls.conference.END_REASONS` only, so ``docs/conference.md``
is checked against the code by a test. When the table changes, rerun

    python -m hopline.calls.conference_diagram            # Mermaid stateDiagram-v2
    python -m hopline.calls.conference_diagram --table    # the Markdown table

and paste the output between the markers in ``docs/conference.md``. A node is
a ``role/state`` pair (``HOST_ACTIVE``, ``MEMBER_HANDING_OVER``); events between
the same two nodes share one edge, their names joined by commas.
"""

from __future__ import annotations

import sys

from hopline.calls.conference import END_REASONS, TRANSITIONS, ConfRole, ConfState

__all__ = ["render_mermaid", "render_table"]


def _node(role: ConfRole, state: ConfState) -> str:
    return "ENDED" if state is ConfState.ENDED else f"{role.name}_{state.name}"


def render_mermaid() -> str:
    """Return the state diagram as Mermaid ``stateDiagram-v2`` source."""
    edges: dict[tuple[str, str], list[str]] = {}
    for (role, state, event), (to_role, to_state) in TRANSITIONS.items():
        edge = (_node(role, state), _node(to_role, to_state))
        edges.setdefault(edge, []).append(event.__name__)
    lines = ["stateDiagram-v2"]
    lines += [f"    [*] --> {_node(role, ConfState.IDLE)}" for role in ConfRole]
    lines += [f"    {a} --> {b}: {', '.join(names)}" for (a, b), names in edges.items()]
    lines.append("    ENDED --> [*]")
    return "\n".join(lines) + "\n"


def render_table() -> str:
    """Return every row of the table as Markdown (role, state, event, next, end reason)."""
    lines = [
        "| role | state | event | next role | next state | end reason |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, (to_role, to_state) in TRANSITIONS.items():
        role, state, event = key
        reason = END_REASONS.get(key)
        lines.append(
            f"| {role.value} | {state.name} | `{event.__name__}` | {to_role.value} "
            f"| {to_state.name} | {reason.value if reason else ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Print the diagram, or the table with ``--table``."""
    sys.stdout.write(render_table() if "--table" in argv else render_mermaid())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
