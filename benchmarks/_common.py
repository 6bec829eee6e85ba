"""Shared helpers for benchmarks: timing loops, tables, JSON results."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def rate(func: Callable[[], object], min_seconds: float = 0.3, repeats: int = 3) -> float:
    """Best calls/second of ``func`` over ``repeats`` runs of at least ``min_seconds``."""
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        elapsed = 0.0
        while elapsed < min_seconds:
            for _ in range(100):
                func()
            count += 100
            elapsed = time.perf_counter() - start
        best = max(best, count / elapsed)
    return best


def print_table(title: str, headers: list[str], rows: list[list[Any]]) -> None:
    """Print a plain aligned table."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write results with machine facts to benchmarks/results/NAME.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"machine": {"python": platform.python_version(), "cpu": platform.processor()}, **data}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")
    return path
