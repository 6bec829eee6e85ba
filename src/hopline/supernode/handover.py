"""Graceful leave: hand what this supernode holds to the nodes that replace it.

When a supernode is stopped (SIGTERM, SIGINT), it first tells the overlay
it is leaving, then pushes every presence record and white-pages profile it
holds to the supernodes that become owners of its slots once it is gone,
and only then stops serving. So a record whose every replica was on this
node (replication 1, or several owners leaving one after another) is still
found after it exits, without waiting for its user to republish.

Planning is pure computation (sans-I/O):

* :func:`leave_targets` -- for every slot this node holds a replica of, the
  owners of that slot in the membership *without this node* that were not
  owners before. With rendezvous hashing that is exactly one node per slot
  (the next in the slot's ranking) while enough members remain; the other
  owners already hold the slot.
* :func:`route_items` -- which of those nodes needs which record or profile
  (a profile lives in the slots of all its search terms).
* :class:`HandoverPlan` -- the records and profiles per node, cut into
  messages: :class:`~hopline.wire.directory.StoreReplica` batches under
  :data:`MAX_BATCH_BYTES` and :class:`~hopline.wire.search_replica.ProfileReplica`
  batches of at most 50 profiles (the replication messages, reused).

:func:`hand_over` is the thin asyncio part: one task per receiving node,
each sending the node's leave notice on the *reliable* channel first (it
arrives before the replicas, in order, so the receiver already counts the
slot as its own when they come; the unreliable SWIM notice may be late or
lost), then its batches one request at a time, counting what the receiver
acknowledges. All of it is bounded by one total timeout; what is not
acknowledged by then is reported, not retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from hopline.overlay.slots import OwnershipMap, owners
from hopline.runtime.endpoint import EndpointError, PeerConnection
from hopline.wire import Message, encode_record
from hopline.wire.commands import PresenceRecord
from hopline.wire.directory import PublicProfile, StoreReplica, StoreReplicaReply
from hopline.wire.search_replica import (
    MAX_REPLICA_PROFILES,
    ProfileReplica,
    ProfileReplicaReply,
)

__all__ = [
    "HANDOVER_TIMEOUT_S",
    "MAX_BATCH_BYTES",
    "HandoverPlan",
    "HandoverReport",
    "hand_over",
    "leave_targets",
    "profile_batches",
    "record_batches",
    "route_items",
]

HANDOVER_TIMEOUT_S = 5.0
HOP_TIMEOUT_S = 2.0
MAX_BATCH_BYTES = 48 * 1024  # a StoreReplica stays well under the 64 KiB message bound
T = TypeVar("T")
Connect = Callable[[str], Awaitable[PeerConnection]]


def leave_targets(
    old: OwnershipMap, remaining: Iterable[str], me: str
) -> dict[int, tuple[str, ...]]:
    """Slot -> the nodes that gain it when ``me`` leaves and ``remaining`` stay.

    Only slots ``me`` holds a replica of in ``old`` are listed, and only
    when some remaining node gains them.
    """
    stay = sorted(set(remaining) - {me})
    targets: dict[int, tuple[str, ...]] = {}
    for slot in old.slots_owned_by(me):  # about R * slots / N of them: cheap even at N = 1,000
        before = old.owners_of_slot(slot)
        gained = tuple(node for node in owners(slot, stay, old.replication) if node not in before)
        if gained:
            targets[slot] = gained
    return targets


def route_items(
    targets: Mapping[int, tuple[str, ...]], items: Iterable[tuple[T, Iterable[int]]]
) -> dict[str, list[T]]:
    """Node -> the items it must receive; each item comes with the slots it lives in."""
    routed: dict[str, list[T]] = {}
    for item, slots in items:
        for node in sorted({node for slot in slots for node in targets.get(slot, ())}):
            routed.setdefault(node, []).append(item)
    return routed


def record_batches(
    records: Sequence[PresenceRecord], max_bytes: int = MAX_BATCH_BYTES
) -> list[StoreReplica]:
    """``records`` in order, cut into StoreReplica messages of at most ``max_bytes`` of records."""
    batches: list[StoreReplica] = []
    current: list[PresenceRecord] = []
    size = 0
    for record in records:
        length = len(encode_record(record)) + 8  # the object header around it
        if current and size + length > max_bytes:
            batches.append(StoreReplica(records=tuple(current)))
            current, size = [], 0
        current.append(record)
        size += length
    if current:
        batches.append(StoreReplica(records=tuple(current)))
    return batches


def profile_batches(profiles: Sequence[PublicProfile]) -> list[ProfileReplica]:
    """``profiles`` in order, cut into ProfileReplica messages of at most 50."""
    return [
        ProfileReplica(profiles=tuple(profiles[start : start + MAX_REPLICA_PROFILES]))
        for start in range(0, len(profiles), MAX_REPLICA_PROFILES)
    ]


@dataclass(frozen=True)
class HandoverPlan:
    """What goes to which node when this supernode leaves."""

    records: Mapping[str, Sequence[PresenceRecord]] = field(default_factory=dict)
    profiles: Mapping[str, Sequence[PublicProfile]] = field(default_factory=dict)

    @property
    def nodes(self) -> list[str]:
        """The receiving nodes, sorted."""
        return sorted(set(self.records) | set(self.profiles))

    def record_count(self) -> int:
        """Record copies to send (a record going to two nodes counts twice)."""
        return sum(len(records) for records in self.records.values())

    def profile_count(self) -> int:
        """Profile copies to send."""
        return sum(len(profiles) for profiles in self.profiles.values())

    def messages_for(self, node: str) -> list[Message]:
        """The requests for ``node``: its records, then its profiles."""
        records = record_batches(self.records.get(node, ()))
        profiles = profile_batches(self.profiles.get(node, ()))
        return [*records, *profiles]


@dataclass
class HandoverReport:
    """What a handover achieved (logged by the leaving node)."""

    records: int = 0
    profiles: int = 0
    nodes: int = 0
    acknowledged: int = 0  # records and profiles the receivers stored or already had
    refused: int = 0
    failed_nodes: list[str] = field(default_factory=list)
    timed_out: bool = False
    seconds: float = 0.0

    def fields(self) -> dict[str, object]:
        """The report as structured log fields."""
        return {
            "records": self.records,
            "profiles": self.profiles,
            "nodes": self.nodes,
            "acknowledged": self.acknowledged,
            "refused": self.refused,
            "failed_nodes": sorted(self.failed_nodes),
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 3),
        }


def _count_reply(report: HandoverReport, reply: Message) -> None:
    if isinstance(reply, StoreReplicaReply):
        report.acknowledged += reply.stored + reply.unchanged
        report.refused += reply.refused
    elif isinstance(reply, ProfileReplicaReply):
        report.acknowledged += reply.indexed
        report.refused += reply.refused


async def _deliver(
    node: str, messages: list[Message], connect: Connect, notice: Message, report: HandoverReport
) -> None:
    """The leave notice, then every batch, to one node; a failure ends this node's part."""
    try:
        pc = await connect(node)
        pc.notify(notice)  # reliable and in order: it arrives before the batches
        for message in messages:
            _count_reply(report, await pc.request(message, timeout=HOP_TIMEOUT_S))
    except (EndpointError, KeyError):
        report.failed_nodes.append(node)


async def hand_over(
    plan: HandoverPlan, connect: Connect, notice: Message, timeout: float = HANDOVER_TIMEOUT_S
) -> HandoverReport:
    """Send ``plan`` (see the module docstring); never longer than ``timeout`` seconds."""
    started = time.monotonic()
    report = HandoverReport(plan.record_count(), plan.profile_count(), len(plan.nodes))
    loop = asyncio.get_running_loop()
    tasks = {
        node: loop.create_task(_deliver(node, plan.messages_for(node), connect, notice, report))
        for node in plan.nodes
    }
    if tasks:
        _, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, timeout))
        for node, task in tasks.items():
            if task in pending:
                task.cancel()
                report.failed_nodes.append(node)
                report.timed_out = True
        await asyncio.gather(*pending, return_exceptions=True)
    report.seconds = time.monotonic() - started
    return report
