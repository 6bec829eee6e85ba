"""netlab: real NATs and firewalls from Linux network namespaces and nftables.

A :class:`Lab` builds a public segment (a bridge in namespace ``P-pub``,
203.0.113.0/24 and 2001:db8::/64) with servers on it, and clients behind
routers of each :class:`NatClass` (public, masquerade, full-cone, symmetric,
double-nat, udp-blocked, ipv6), then runs real Hopline processes inside the
namespaces (:meth:`Lab.run`, :meth:`Lab.exec`). Everything a lab creates is
named with its own prefix and removed on close, at exit, on SIGTERM, or by
the next :func:`cleanup_stale` if its owner was killed. It needs root, ``ip``
(iproute2) and ``nft`` (nftables); :func:`unavailable_reason` says why not.

Modules: :mod:`~hopline.netlab.lab` (topology), :mod:`~hopline.netlab.nat`
(the classes and their rulesets), :mod:`~hopline.netlab.system` (commands,
ownership, cleanup), :mod:`~hopline.netlab.process` (processes in a
namespace), :mod:`~hopline.netlab.probe` (a reflector and UDP/TCP probes),
:mod:`~hopline.netlab.agent` (a client session driven by JSON lines);
``python -m hopline.netlab up|down|status`` for work by hand (docs/netlab.md).

TODO (for the NAT-traversal work): several clients behind one shared CGN or
home router (hairpinning), NAT mapping timeouts, and IPv6 firewalls
(inbound-filtering IPv6 routers); every class listed above is implemented.
"""

from hopline.netlab.lab import Host, Lab
from hopline.netlab.nat import NatClass
from hopline.netlab.process import LabProcess
from hopline.netlab.system import (
    NetlabError,
    NetlabUnavailable,
    cleanup_stale,
    require,
    unavailable_reason,
)

__all__ = [
    "Host",
    "Lab",
    "LabProcess",
    "NatClass",
    "NetlabError",
    "NetlabUnavailable",
    "cleanup_stale",
    "require",
    "unavailable_reason",
]
