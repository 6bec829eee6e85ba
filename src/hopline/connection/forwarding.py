"""Routing of ``forward`` envelopes through an intermediate node (pure logic).

A node that forwards (a supernode, or a relay) receives a
:class:`~hopline.wire.commands.Forward` from one connected peer and passes it
on to another. :func:`route` decides, from the envelope, who sent it (as
certified) and the peers this node is connected to, where it goes and what
is sent on:

* the hop limit is spent: at zero the envelope is dropped (``hop-limit``);
* the target is ``to_address``, else ``to_node``, else ``to_user`` (a
  certified name; with ``to_device``, only that device of the user, so a
  user logged in on several devices gets each its own envelopes); no
  connected peer matches: dropped (``no-route``). When one device has
  several connections here, the newest wins: after a network change the
  device connects again from its new address while the old connection
  lingers until it times out, and only the new one reaches it;
* ``from_user`` and ``from_device`` are replaced by what the sender's
  certificate says, so a peer cannot forward in someone else's name
  (an anonymous sender cannot use forwarding at all: ``anonymous``);
* an envelope addressed to this node itself is not forwarded (``local``):
  the node handles it as an ordinary notice.

The payload is passed on untouched; normally it is sealed end to end, so
the forwarding node routes without reading it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hopline.connection.events import PeerIdentity
from hopline.wire import Address
from hopline.wire.commands import Forward

Key = tuple[str, tuple[str, int]]


@dataclass(frozen=True)
class Route:
    """Send ``envelope`` on the connection ``key``."""

    key: Key
    envelope: Forward


@dataclass(frozen=True)
class Drop:
    """Do not forward; ``reason`` is the counter key."""

    reason: str


def _find(
    envelope: Forward, peers: dict[Key, PeerIdentity | None], own_name: str | None
) -> Key | str:
    if envelope.to_address is not None:
        wanted = (str(envelope.to_address.host), envelope.to_address.port)
        for key in peers:
            if key[1] == wanted:
                return key
        return "no-route"
    name = envelope.to_node.decode("utf-8", "replace") if envelope.to_node else envelope.to_user
    if name is None or name.lower() == own_name:
        return "local"
    for key, peer in reversed(peers.items()):  # newest connection first (module docstring)
        if peer is not None and peer.name == name.lower() and _device_matches(envelope, peer):
            return key
    return "no-route"


def _device_matches(envelope: Forward, peer: PeerIdentity) -> bool:
    """No ``to_device``, or the peer's certificate is for that device."""
    if envelope.to_device is None:
        return True
    certificate = peer.certificate
    return certificate is not None and certificate.body.device_id == envelope.to_device


def route(
    envelope: Forward,
    sender: PeerIdentity | None,
    peers: dict[Key, PeerIdentity | None],
    own_name: str | None,
) -> Route | Drop:
    """Where ``envelope`` from ``sender`` goes, and what is sent on.

    ``peers`` are the connected peers in the order their connections were made.
    """
    if sender is None or sender.certificate is None:
        return Drop("anonymous")
    found = _find(envelope, peers, own_name)
    if isinstance(found, str):
        return Drop(found)
    if envelope.hop_limit == 0:
        return Drop("hop-limit")
    body = sender.certificate.body
    onward = dataclasses.replace(
        envelope,
        from_user=body.subject,
        from_device=body.device_id,
        hop_limit=envelope.hop_limit - 1,
        request_id=0,
    )
    return Route(found, onward)


def address_key(address: Address) -> Key:
    """The connection-table key of a UDP peer at ``address``."""
    return ("udp", (str(address.host), address.port))
