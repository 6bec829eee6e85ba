"""Peer-to-peer paths: candidates and the connectivity checks that pick one, sans-I/O.

* :mod:`hopline.path.candidates` — :class:`Candidate`, their priorities,
  :func:`gather` (host, server-reflexive, predicted and relayed candidates)
  and the conversion to and from the signalling ``Endpoint`` records.
* :mod:`hopline.path.checks` — :class:`PathChecker`, one side of the
  simultaneous STUN checks (ICE-style, RFC 8445 in spirit) that find, select
  and keep alive the best working pair, upgrading from a relay to a direct
  path when one appears.

The asyncio shell that owns the sockets and the signalling lives elsewhere;
these modules take bytes, events and ``now`` and return bytes, events and
timers.
"""

from hopline.path.candidates import (
    Candidate,
    CandidateError,
    CandidateKind,
    candidate_priority,
    from_endpoint,
    gather,
    is_relay_base,
    pair_priority,
    to_endpoint,
)
from hopline.path.checks import (
    CheckConfig,
    ChecksFailed,
    PairState,
    PairSucceeded,
    PathChecker,
    PathEvent,
    PathSelected,
)

__all__ = [
    "Candidate",
    "CandidateError",
    "CandidateKind",
    "CheckConfig",
    "ChecksFailed",
    "PairState",
    "PairSucceeded",
    "PathChecker",
    "PathEvent",
    "PathSelected",
    "candidate_priority",
    "from_endpoint",
    "gather",
    "is_relay_base",
    "pair_priority",
    "to_endpoint",
]
