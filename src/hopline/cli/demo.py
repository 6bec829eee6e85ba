"""``hopline demo``: a Hopline network on this machine, every capability shown."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hopline.cli.output import emit_json, human
from hopline.demo.walkthrough import Step, run_demo


def demo_command(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.5, max=600, help="length of the timed exchange")
    ] = 2.0,
) -> None:
    """Start a Hopline network as separate processes and walk through what it can do."""
    out = human(as_json)
    out.print("[bold]Hopline demo[/]: a login server, three supernodes and two users here\n")

    def show(step: Step) -> None:
        mark = "[green]ok[/]" if step.ok else "[red]FAILED[/]"
        out.print(f"  {mark} {step.name} ({step.ms:.0f} ms)")

    started = time.perf_counter()
    ok, steps, call = run_demo(seconds, show)
    total_ms = round((time.perf_counter() - started) * 1000, 1)
    if as_json:
        emit_json(
            {
                "ok": ok,
                "ms": total_ms,
                "steps": [
                    {"name": s.name, "ok": s.ok, "ms": s.ms, "detail": s.detail} for s in steps
                ],
                "call": call,
            }
        )
    else:
        table = Table(title=f"Hopline demo: {'all steps passed' if ok else 'FAILED'}")
        for column in ("step", "ok", "ms", "detail"):
            table.add_column(column)
        for s in steps:
            table.add_row(s.name, "yes" if s.ok else "NO", f"{s.ms:.0f}", escape(s.detail))
        out.print(table)
        if call is not None:
            quality = f"MOS estimate {call['mos_estimate']}, PESQ {call['pesq']}"
            out.print(
                f"call: {call['path']} path, loss {call['loss']:.1%},"
                f" jitter {call['jitter_ms']} ms, RTT {call['rtt_ms']} ms, {quality}"
            )
        out.print(f"total {total_ms / 1000:.1f} s")
    raise typer.Exit(0 if ok else 1)
