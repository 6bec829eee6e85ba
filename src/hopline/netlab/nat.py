"""Client classes and the nftables rulesets that make them (pure functions).

Each :class:`NatClass` is what the public segment sees of a client, in the
terms of RFC 4787 (mapping, filtering) and of everyday networks:

==============  ==========================================================
class           what its router does
==============  ==========================================================
``public``      nothing: the client sits on the public segment itself
``masquerade``  ``masquerade``: endpoint-independent mapping (Linux keeps
                the source port when it can), address-and-port-dependent
                filtering — a "port-restricted cone"
``full-cone``   masquerade, plus a DNAT of every inbound UDP port to the
                client on the same port: endpoint-independent mapping and
                filtering (one client per router, so ports never clash)
``symmetric``   ``masquerade random,fully-random``: a new random port per
                destination (address-and-port-dependent mapping)
``double-nat``  a carrier-grade NAT (masquerade, 198.51.100.0/24 inside) with
                a home NAT (masquerade) behind it
``udp-blocked`` masquerade, and every forwarded UDP packet dropped (both
                directions); TCP passes
``ipv6``        IPv4 behind a symmetric NAT, but a global IPv6 address routed
                without NAT or filtering: reachable over IPv6 only
==============  ==========================================================

Every router (and the CGN) also drops new inbound UDP addressed to itself on
its WAN side, as home routers do. Without that, a peer's hole-punching probe
that reaches the router before its client has sent anything leaves a
conntrack entry for the router's own address and port, and masquerade then
gives the client's next packet to that peer a different port: the NAT would
look symmetric to exactly the peers punching towards it.

The rulesets are nft scripts for one fresh table per router namespace (named
with the lab prefix, so teardown can find it); :mod:`hopline.netlab.lab`
loads them with ``nft -f -``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["NatClass", "cgn_ruleset", "router_ruleset"]


class NatClass(StrEnum):
    """How a client reaches the public segment (see the module docstring)."""

    PUBLIC = "public"
    MASQUERADE = "masquerade"
    FULL_CONE = "full-cone"
    SYMMETRIC = "symmetric"
    DOUBLE_NAT = "double-nat"
    UDP_BLOCKED = "udp-blocked"
    IPV6 = "ipv6"

    @property
    def routed(self) -> bool:
        """Whether the client sits behind a router namespace."""
        return self is not NatClass.PUBLIC


_MASQUERADE = {
    NatClass.MASQUERADE: "masquerade",
    NatClass.FULL_CONE: "masquerade",
    NatClass.SYMMETRIC: "masquerade random,fully-random",
    NatClass.DOUBLE_NAT: "masquerade",  # the home NAT; the CGN has its own table
    NatClass.UDP_BLOCKED: "masquerade",
    NatClass.IPV6: "masquerade random,fully-random",
}


def router_ruleset(table: str, nat: NatClass, wan: str, client: str) -> str:
    """The nft script of a client's router: ``wan`` is its public-side interface."""
    if nat not in _MASQUERADE:
        raise ValueError(f"class {nat} has no router")
    chains = [
        _chain(
            "postrouting",
            "nat",
            "postrouting",
            "srcnat",
            [
                f'oifname "{wan}" {_MASQUERADE[nat]}',
            ],
        )
    ]
    chains.append(_wan_input(wan))
    if nat is NatClass.FULL_CONE:
        chains.append(
            _chain(
                "prerouting",
                "nat",
                "prerouting",
                "dstnat",
                [
                    f'iifname "{wan}" udp dport 1-65535 dnat to {client}',
                ],
            )
        )
    if nat is NatClass.UDP_BLOCKED:
        chains.append(
            _chain(
                "forward",
                "filter",
                "forward",
                "filter",
                [
                    "meta l4proto udp counter drop",
                ],
            )
        )
    return _table(table, chains)


def cgn_ruleset(table: str, wan: str) -> str:
    """The nft script of a carrier-grade NAT (endpoint-independent masquerade)."""
    return _table(
        table,
        [
            _chain(
                "postrouting",
                "nat",
                "postrouting",
                "srcnat",
                [
                    f'oifname "{wan}" masquerade',
                ],
            ),
            _wan_input(wan),
        ],
    )


def _wan_input(wan: str) -> str:
    """Drop new UDP from the WAN to the router itself (see the module docstring)."""
    rule = f'iifname "{wan}" ct state new meta l4proto udp drop'
    return _chain("input", "filter", "input", "filter", [rule])


def _chain(name: str, kind: str, hook: str, priority: str, rules: list[str]) -> str:
    body = "\n".join(f"    {rule}" for rule in rules)
    head = f"    type {kind} hook {hook} priority {priority}; policy accept;"
    return f"  chain {name} {{\n{head}\n{body}\n  }}"


def _table(name: str, chains: list[str]) -> str:
    return f"table ip {name} {{\n" + "\n".join(chains) + "\n}\n"
