"""The directory key space: usernames to slots, slots to supernodes.

Every supernode knows every supernode (a one-hop overlay), so every node can
compute, on its own and identically, which supernodes hold a user's record:

1. **Slots.** A canonical username (or any normalized key, such as a search
   term) is hashed with BLAKE2b (64 bits, personalised) and reduced modulo
   the slot count (4096 by default). Slots are the unit of ownership and of
   handover, so membership changes move whole slots, never single users.
2. **Owners.** The owners of a slot are chosen by rendezvous (highest random
   weight, HRW) hashing: every live supernode id gets the score
   ``BLAKE2b(slot || node id)`` and the ``replication`` highest scores own the
   slot, best first (the first is the *primary*). HRW needs no ring and no
   virtual nodes, and it moves the least possible on churn: a node that joins
   takes over a slot-replica only where it outranks a current owner (about
   ``R * slots / (N + 1)`` of them), and a node that leaves hands over exactly
   the replicas it held, each to the next node in that slot's ranking.
3. **Handover.** :func:`handover` compares two member lists and lists the
   :class:`Transfer` s a new owner must pull (``from_nodes`` are the old owners
   still alive; an empty tuple means every replica was lost and the records
   come back only when their users republish).

Supernode ids are strings (the login server's ``EnrollReply.node_id``). This
module is pure computation: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from hopline.identity.names import canonical_username

DEFAULT_SLOTS = 4096
DEFAULT_REPLICATION = 3
_SLOT_PERSON = b"hopline-slot"
_HRW_PERSON = b"hopline-hrw"


def slot_of_key(key: str, slots: int = DEFAULT_SLOTS) -> int:
    """The slot of an already-normalized key (a canonical name or a search term)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=_SLOT_PERSON).digest()
    return int.from_bytes(digest, "big") % slots


def slot_of(username: str, slots: int = DEFAULT_SLOTS) -> int:
    """The slot of a username (canonicalized first; raises InvalidUsername)."""
    return slot_of_key(canonical_username(username), slots)


def _score(slot_bytes: bytes, node: bytes) -> int:
    digest = hashlib.blake2b(slot_bytes + node, digest_size=8, person=_HRW_PERSON).digest()
    return int.from_bytes(digest, "big")


def _ranked(slot: int, nodes: list[tuple[str, bytes]], count: int) -> tuple[str, ...]:
    slot_bytes = slot.to_bytes(4, "big")
    scored = [(_score(slot_bytes, raw), node) for node, raw in nodes]
    return tuple(node for _, node in heapq.nlargest(count, scored))


def _encoded(members: Iterable[str]) -> list[tuple[str, bytes]]:
    return [(node, node.encode("utf-8")) for node in sorted(set(members))]


def owners(
    slot: int, members: Iterable[str], replication: int = DEFAULT_REPLICATION
) -> tuple[str, ...]:
    """The ``replication`` owners of ``slot`` among ``members``, primary first."""
    if replication < 1:
        raise ValueError("replication must be at least 1")
    return _ranked(slot, _encoded(members), replication)


@dataclass(frozen=True, slots=True)
class Transfer:
    """One slot-replica that moves: ``to_node`` must fetch ``slot`` from ``from_nodes``."""

    slot: int
    from_nodes: tuple[str, ...]
    to_node: str


class OwnershipMap:
    """Owners of every slot for one member list, computed once.

    Building the map costs ``slots * len(members)`` hashes (about 2 s for 1,000
    supernodes and 4,096 slots); lookups afterwards are dictionary reads.
    """

    def __init__(
        self,
        members: Iterable[str],
        replication: int = DEFAULT_REPLICATION,
        slots: int = DEFAULT_SLOTS,
    ) -> None:
        if replication < 1 or slots < 1:
            raise ValueError("replication and slots must be at least 1")
        nodes = _encoded(members)
        self.members: frozenset[str] = frozenset(node for node, _ in nodes)
        self.replication = replication
        self.slots = slots
        self.table: tuple[tuple[str, ...], ...] = tuple(
            _ranked(slot, nodes, replication) for slot in range(slots)
        )
        self._by_node: dict[str, list[int]] = {node: [] for node in self.members}
        for slot, holders in enumerate(self.table):
            for node in holders:
                self._by_node[node].append(slot)

    def owners_of_slot(self, slot: int) -> tuple[str, ...]:
        """The owners of ``slot``, primary first."""
        return self.table[slot]

    def owners_of_user(self, username: str) -> tuple[str, ...]:
        """The owners of the slot of ``username``, primary first."""
        return self.table[slot_of(username, self.slots)]

    def slot_of_user(self, username: str) -> int:
        """The slot of ``username`` in this map's key space."""
        return slot_of(username, self.slots)

    def slots_owned_by(self, node: str) -> tuple[int, ...]:
        """The slots ``node`` holds a replica of (empty if not a member)."""
        return tuple(self._by_node.get(node, ()))

    def transfers_to(self, new: OwnershipMap) -> list[Transfer]:
        """The slot-replicas that move when membership goes from ``self`` to ``new``."""
        if (new.slots, new.replication) != (self.slots, self.replication):
            raise ValueError("maps differ in slot count or replication")
        moves: list[Transfer] = []
        for slot, (before, after) in enumerate(zip(self.table, new.table, strict=True)):
            if before == after:
                continue
            sources = tuple(node for node in before if node in new.members)
            moves.extend(Transfer(slot, sources, node) for node in after if node not in before)
        return moves


def handover(
    old_members: Iterable[str],
    new_members: Iterable[str],
    replication: int = DEFAULT_REPLICATION,
    slots: int = DEFAULT_SLOTS,
) -> list[Transfer]:
    """Transfers needed to go from ``old_members`` to ``new_members`` (see module doc)."""
    old = OwnershipMap(old_members, replication, slots)
    return old.transfers_to(OwnershipMap(new_members, replication, slots))


__all__ = [
    "DEFAULT_REPLICATION",
    "DEFAULT_SLOTS",
    "OwnershipMap",
    "Transfer",
    "handover",
    "owners",
    "slot_of",
    "slot_of_key",
]
