"""The daemon's event stream: what happened, for every API subscriber.

Each subscriber gets its own bounded queue. A subscriber that stops reading
does not make the daemon grow: when its queue is full the oldest event is
dropped and the loss is counted, and the next event it reads says how many it
missed (``missed``), so a UI knows to refresh its state.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

QUEUE_EVENTS = 256


@dataclass(frozen=True)
class Event:
    """One thing that happened: ``type`` names it, ``data`` carries the details."""

    type: str
    data: dict[str, Any]
    id: int
    at: float
    missed: int = 0

    def to_json(self) -> dict[str, Any]:
        """The event as the API sends it."""
        doc: dict[str, Any] = {"id": self.id, "type": self.type, "at": self.at, "data": self.data}
        if self.missed:
            doc["missed"] = self.missed
        return doc


@dataclass(eq=False)
class Subscription:
    """One reader of the stream."""

    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_EVENTS))
    missed: int = 0

    async def next(self) -> Event:
        """Wait for the next event (with the count of events dropped before it)."""
        event = await self.queue.get()
        if self.missed:
            event = Event(event.type, event.data, event.id, event.at, self.missed)
            self.missed = 0
        return event


class EventBus:
    """Fan-out of daemon events to subscribers (see the module docstring)."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)

    def subscribe(self) -> Subscription:
        """A new subscription; call :meth:`unsubscribe` when done."""
        subscription = Subscription()
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``."""
        self._subscribers.discard(subscription)

    def emit(self, type_: str, **data: Any) -> Event:
        """Deliver an event to every subscriber."""
        event = Event(type_, data, next(self._ids), time.time())
        for subscription in self._subscribers:
            if subscription.queue.full():
                subscription.queue.get_nowait()
                subscription.missed += 1
            subscription.queue.put_nowait(event)
        return event

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)
