"""A simulated NAT for deterministic tests: RFC 4787 mapping and filtering, as functions.

:class:`FakeNat` models one NAT box with one public IP. It knows nothing of
sockets or time; a test's fake network calls it for every datagram:

* ``nat.outbound(src, dst)`` — a datagram from private ``src`` to public
  ``dst`` leaves as from the returned public address (the *mapping*); the
  datagram also opens the filter for replies from ``dst``;
* ``nat.inbound(src, mapped_dst)`` — a datagram from public ``src`` to the
  NAT's ``mapped_dst`` is delivered to the returned private address, or
  dropped (None) by the *filtering*.

Mapping (which outbound datagrams share a public port), after RFC 4787:
``endpoint-independent`` (one per private source), ``address-dependent``
(per private source and destination IP), ``address-and-port-dependent``
(per private source and destination address). Filtering (who may send in
through a mapping): ``endpoint-independent`` (anyone),
``address-dependent`` (IPs the mapping has sent to),
``address-and-port-dependent`` (exact addresses it has sent to).
Port choice: ``preserve`` keeps the private port when it is free,
``sequential`` counts up from ``first_port``, ``random`` draws from a
seeded generator. Two boxes in a row make a double NAT. Mappings never
expire (tests that need timeouts drop the object).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Behaviour", "FakeNat", "PortMode"]

Addr = tuple[str, int]


class Behaviour(StrEnum):
    """RFC 4787 mapping or filtering behaviour."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class PortMode(StrEnum):
    """How the NAT picks a mapping's public port."""

    PRESERVE = "preserve"
    SEQUENTIAL = "sequential"
    RANDOM = "random"


@dataclass
class _Mapping:
    private: Addr
    public_port: int
    sent_to: set[Addr] = field(default_factory=set)


class FakeNat:
    """One NAT box: ``mapping`` and ``filtering`` behaviours, public IP ``public_ip``."""

    def __init__(
        self,
        mapping: Behaviour | str,
        filtering: Behaviour | str,
        public_ip: str,
        port_mode: PortMode | str = PortMode.PRESERVE,
        *,
        first_port: int = 40000,
        seed: int = 0,
    ) -> None:
        """A NAT with no mappings yet."""
        self.mapping, self.filtering = Behaviour(mapping), Behaviour(filtering)
        self.public_ip, self.port_mode = public_ip, PortMode(port_mode)
        self._next_port = first_port
        self._rng = random.Random(seed)
        self._by_key: dict[tuple[object, ...], _Mapping] = {}
        self._by_port: dict[int, _Mapping] = {}

    def outbound(self, src: Addr, dst: Addr) -> Addr:
        """The public source of a datagram from ``src`` to ``dst`` (creating a mapping)."""
        key = self._key(src, dst)
        found = self._by_key.get(key)
        if found is None:
            found = _Mapping(src, self._pick_port(src[1]))
            self._by_key[key] = found
            self._by_port[found.public_port] = found
        found.sent_to.add(dst)
        return (self.public_ip, found.public_port)

    def inbound(self, src: Addr, mapped_dst: Addr) -> Addr | None:
        """Where a datagram from ``src`` to ``mapped_dst`` goes inside, or None (filtered)."""
        found = self._by_port.get(mapped_dst[1]) if mapped_dst[0] == self.public_ip else None
        if found is None:
            return None
        if self.filtering is Behaviour.ADDRESS_DEPENDENT:
            allowed = any(src[0] == sent[0] for sent in found.sent_to)
        elif self.filtering is Behaviour.ADDRESS_AND_PORT_DEPENDENT:
            allowed = src in found.sent_to
        else:
            allowed = True
        return found.private if allowed else None

    @property
    def mappings(self) -> int:
        """How many mappings exist."""
        return len(self._by_key)

    def _key(self, src: Addr, dst: Addr) -> tuple[object, ...]:
        if self.mapping is Behaviour.ADDRESS_DEPENDENT:
            return (src, dst[0])
        if self.mapping is Behaviour.ADDRESS_AND_PORT_DEPENDENT:
            return (src, dst)
        return (src,)

    def _pick_port(self, wanted: int) -> int:
        if self.port_mode is PortMode.PRESERVE and wanted not in self._by_port:
            return wanted
        if self.port_mode is PortMode.RANDOM:
            while True:
                port = self._rng.randrange(1024, 65536)
                if port not in self._by_port:
                    return port
        while self._next_port in self._by_port:
            self._next_port += 1
        self._next_port += 1
        return self._next_port - 1
