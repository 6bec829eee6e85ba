"""``hopline demo``: a whole Hopline network on this machine (placeholder until runtime lands)."""

from __future__ import annotations

import typer


def demo_command(
    as_json: bool = typer.Option(False, "--json", help="print one JSON document"),
    seconds: float = typer.Option(3.0, "--seconds", min=0.5, help="how long to exercise links"),
) -> None:
    """Start a Hopline network on this machine and show every capability working."""
    raise typer.Exit(0)
