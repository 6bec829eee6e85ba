"""Running Hopline's asyncio code, on uvloop when it is installed.

uvloop is a drop-in, faster event loop (libuv); it is a dependency on
non-Windows platforms but nothing requires it. :func:`run` uses it when
importable and falls back to the standard asyncio loop otherwise, so the
same entry point works everywhere. Tests run on pytest-asyncio's default
loop; the runtime never assumes which loop it is on.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    """Whether ``uvloop`` can be imported."""
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return False
    return True


def loop_factory(*, use_uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory making uvloop loops when wanted and available, else asyncio ones."""
    if use_uvloop and uvloop_available():
        uvloop = importlib.import_module("uvloop")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True, debug: bool = False) -> T:
    """Run ``main`` to completion on a fresh loop (uvloop if available) and return its result."""
    with asyncio.Runner(debug=debug, loop_factory=loop_factory(use_uvloop=use_uvloop)) as runner:
        return runner.run(main)
