"""Voice call signalling, sans-I/O.

* :mod:`hopline.calls.state` — the call state machine as plain data
  (:data:`~hopline.calls.state.TRANSITIONS`), :class:`~hopline.calls.state.Call`
  that runs it with timers as data, and :class:`~hopline.calls.state.Fork` for
  ringing every device of the callee at once.
* :mod:`hopline.calls.diagram` — renders the table as a Mermaid state diagram
  and a Markdown table for ``docs/calls.md``.
"""

from hopline.calls.state import (
    END_REASONS,
    TRANSITIONS,
    Call,
    CallProtocolError,
    CallRole,
    CallState,
    CallTimeouts,
    EndReason,
    Event,
    Fork,
    ForkResult,
    LocalProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "END_REASONS",
    "TRANSITIONS",
    "Call",
    "CallProtocolError",
    "CallRole",
    "CallState",
    "CallTimeouts",
    "EndReason",
    "Event",
    "Fork",
    "ForkResult",
    "LocalProtocolError",
    "RemoteProtocolError",
]
