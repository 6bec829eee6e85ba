"""One simulated network and clock: the discrete-event loop the simulators share.

:class:`SimNetwork` is a priority queue of things that will happen --
message deliveries and timer callbacks -- under one :class:`MockClock`. The
loop pops the earliest, jumps the clock to it and runs it, so simulated time
costs nothing while nothing happens, and one seed fixes the whole run (ties
are broken by insertion order, never by comparing payloads).

Messages are routed by destination :class:`~hopline.wire.types.Address` to
whatever receiver is attached there. Each one gets its arrival time (or is
lost, or duplicated) from a seeded :class:`~hopline.testing.lossy.Impairment`,
which models a datagram: that is how SWIM's messages travel, on the
unreliable channel. ``reliable=True`` models a message on the link's
reliable channel instead: a loss costs a resend ``resend_after`` seconds
later (the link's minimum retransmission timeout) rather than the message,
and duplicates are suppressed, as the link does; after ``max_resends``
consecutive losses the message is given up (the link would report the peer
unreachable). A reliable message can also be held back behind an earlier one
(``not_before``), as one channel delivers in order.

Who is crashed or cut off is the receivers' business: the network only
delivers. :class:`~hopline.testing.overlay_sim.OverlaySim` and
:class:`~hopline.testing.network_sim.NetworkSim` are built on it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from hopline.testing.clock import MockClock
from hopline.testing.lossy import Impairment
from hopline.transport.config import LinkConfig
from hopline.wire.types import Address

__all__ = ["FifoTimers", "Receiver", "SimNetwork"]

Receiver = Callable[[Address, Any], None]
"""Called with ``(source, payload)`` when a message arrives; the time is the clock's."""

_Event = tuple[float, int, Callable[[Any], None], Any]


class SimNetwork:
    """A seeded, impaired network of addressed receivers and a timer queue, one clock."""

    def __init__(
        self,
        impairment: Impairment,
        *,
        clock: MockClock | None = None,
        resend_after: float = LinkConfig().min_rto,
        max_resends: int = 8,
    ) -> None:
        """Deliver through ``impairment``; reliable messages resend every ``resend_after``."""
        self.impairment = impairment
        self.clock = clock or MockClock()
        self.resend_after = resend_after
        self.max_resends = max_resends
        self.sent = 0
        """Messages offered (a reliable message counts once, however often it is resent)."""
        self.resent = 0
        self.given_up = 0
        self.undeliverable = 0
        """Arrivals at an address nobody is attached to."""
        self._receivers: dict[Address, Receiver] = {}
        self._queue: list[_Event] = []
        self._order = itertools.count()

    # ------------------------------------------------------------ wiring

    def attach(self, address: Address, receiver: Receiver) -> None:
        """Deliver what arrives at ``address`` to ``receiver`` (replacing any other)."""
        self._receivers[address] = receiver

    def detach(self, address: Address) -> None:
        """Stop delivering to ``address`` (later arrivals count as undeliverable)."""
        self._receivers.pop(address, None)

    # ------------------------------------------------------------ sending, timers

    def send(
        self,
        source: Address,
        destination: Address,
        payload: object,
        *,
        reliable: bool = False,
        not_before: float | None = None,
    ) -> float | None:
        """Offer one message now; return when it arrives (its first copy), or None if lost.

        ``not_before`` (reliable messages) keeps a channel's order: the
        message arrives no earlier than that time, and after anything
        already queued for that time.
        """
        self.sent += 1
        now = self.clock.now()
        if not reliable:
            arrivals = self.impairment.schedule(now)
            for arrival in arrivals:
                self._push(arrival, self._deliver, (source, destination, payload))
            return min(arrivals, default=None)
        offered = now
        for _ in range(self.max_resends + 1):
            arrivals = self.impairment.schedule(offered)
            if arrivals:
                arrival = max(min(arrivals), not_before or 0.0)
                self._push(arrival, self._deliver, (source, destination, payload))
                return arrival
            self.resent += 1
            offered += self.resend_after
        self.given_up += 1
        return None

    def call_at(self, when: float, callback: Callable[[Any], None], argument: Any = None) -> None:
        """Run ``callback(argument)`` at simulated time ``when`` (now, if that is past)."""
        self._push(max(when, self.clock.now()), callback, argument)

    def _push(self, when: float, callback: Callable[[Any], None], argument: Any) -> None:
        heapq.heappush(self._queue, (when, next(self._order), callback, argument))

    def _deliver(self, item: tuple[Address, Address, object]) -> None:
        source, destination, payload = item
        receiver = self._receivers.get(destination)
        if receiver is None:
            self.undeliverable += 1
            return
        receiver(source, payload)

    # ------------------------------------------------------------ running

    @property
    def pending(self) -> int:
        """Deliveries and timers still queued."""
        return len(self._queue)

    def next_time(self) -> float | None:
        """When the next queued thing happens, or None."""
        return self._queue[0][0] if self._queue else None

    def run_due(self) -> None:
        """Run everything due at the current time (including what that schedules for now)."""
        now = self.clock.now()
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, _, callback, argument = heapq.heappop(queue)
            callback(argument)

    def run_until(
        self, predicate: Callable[[], bool], timeout: float, check_every: float = 0.05
    ) -> bool:
        """Run until ``predicate()`` holds (True) or ``timeout`` simulated seconds pass.

        The predicate is checked at most every ``check_every`` simulated seconds.
        """
        clock = self.clock
        deadline = clock.now() + timeout
        next_check = clock.now()
        while True:
            if clock.now() >= next_check:
                if predicate():
                    return True
                next_check = clock.now() + check_every
            upcoming = self.next_time()
            if upcoming is None or upcoming > deadline:
                clock.advance_to(deadline)
                return predicate()
            clock.advance_to(upcoming)
            self.run_due()

    def run_for(self, duration: float) -> None:
        """Run ``duration`` simulated seconds whatever happens."""
        self.run_until(lambda: False, duration, check_every=duration)


class FifoTimers:
    """Timers that fall due in the order they are added, kept out of the network's heap.

    Hop timeouts (always "now + the same delay") and refresh timers are
    added in time order, so a deque holds them and only the earliest sits in
    :class:`SimNetwork`'s heap: the heap stays small however many are
    pending. Adding a time earlier than the last one raises ``ValueError``.
    """

    def __init__(self, net: SimNetwork, callback: Callable[[Any], None]) -> None:
        """Timers on ``net`` that call ``callback(argument)`` when due."""
        self.net, self.callback = net, callback
        self._due: deque[tuple[float, Any]] = deque()
        self._armed = False

    def __len__(self) -> int:
        return len(self._due)

    def add(self, when: float, argument: Any = None) -> None:
        """Call back with ``argument`` at ``when`` (not before the last time added)."""
        due = self._due
        if due and when < due[-1][0]:
            raise ValueError("FifoTimers need non-decreasing times")
        due.append((when, argument))
        self._arm()

    def _arm(self) -> None:
        if not self._armed and self._due:
            self._armed = True
            self.net.call_at(self._due[0][0], self._fire)

    def _fire(self, _: object) -> None:
        self._armed = False
        due, now = self._due, self.net.clock.now()
        while due and due[0][0] <= now:
            _, argument = due.popleft()
            self.callback(argument)
        self._arm()
