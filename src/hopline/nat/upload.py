"""Upload estimate by a packet train against a supernode's STUN port, sans-I/O.

A conference host sends every member a stream of its own, so the host
election (:mod:`hopline.calls.election`) wants each participant's upload
bandwidth. Nobody can read that off a socket; it has to be measured, and the
classic way that needs no help beyond a STUN server is a *packet train*: send
``count`` large datagrams back to back, as fast as the host can, and see how
far apart they arrive. The uplink (the narrowest link on the way, for most
homes) spaces them out by its rate; the server answers each one at once with
a small Binding response, so the answers come back with the same spacing
(small answers ride a downlink that is rarely the narrower one).

:class:`UploadProbe` builds the train: ``count`` Binding requests, each
padded with RFC 5780's PADDING attribute to ``size`` bytes of UDP payload
(1,200 by default: below the IPv6 minimum MTU, so nothing fragments) and a
fresh transaction id each. The server's answer is never padded (a supernode
answers a padded request with an ordinary response), so the probe cannot be
used for amplification. Each answer is matched to its request by
transaction id and its arrival time kept; anything else is dropped and
counted (:attr:`UploadProbe.dropped`). When every request is answered, or
``timeout_s`` after sending, the estimate is::

    upload = (b - a) x wire_size x 8 / (t_last - t_first)   bit/s

where ``t_first`` and ``t_last`` are the first and last arrivals, ``a`` and
``b`` the positions in the train of the requests they answer (so requests
lost in between still count: they crossed the uplink too; when the answers
came back reordered, ``b - a`` is at least the number of answers less one) and
``wire_size`` the request's size with its IP and UDP headers. Fewer than
:attr:`UploadConfig.min_answers` answers give no estimate (``bps`` None).
A train that arrives faster than the clock can tell apart (on loopback, or
when the receiving loop reads all answers in one go) is capped at
:attr:`UploadConfig.max_bps`: the estimate then says "at least this much".

The supernode rate-limits STUN answers per source IP (40 banked, 20 per
second), so a train of 16 right after a NAT check is answered in full.
:func:`hopline.nat.netcheck.run_netcheck` runs the probe after discovery,
on the socket whose mapping discovery opened, and puts the result in the
report's ``upload_bps``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from hopline.nat.stun import (
    BINDING,
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    TRANSACTION_ID_SIZE,
    Addr,
    MessageClass,
    StunError,
    StunMessage,
    decode,
    encode,
)

__all__ = ["UploadConfig", "UploadEstimate", "UploadProbe"]

_ATTRIBUTE_HEADER = 4
_IP_UDP_HEADERS = {4: 28, 6: 48}


@dataclass(frozen=True)
class UploadConfig:
    """The train: ``count`` requests of ``size`` bytes of UDP payload each."""

    count: int = 16
    size: int = 1200
    timeout_s: float = 1.0  # after sending; what has not come back by then is lost
    min_answers: int = 4
    max_bps: int = 10_000_000_000  # a train too fast to time is reported as this

    def __post_init__(self) -> None:
        if not 2 <= self.count <= 64:
            raise ValueError(f"a train of {self.count} requests")
        if not HEADER_SIZE + _ATTRIBUTE_HEADER <= self.size <= MAX_MESSAGE_SIZE:
            raise ValueError(f"requests of {self.size} bytes")
        if not 2 <= self.min_answers <= self.count or self.timeout_s <= 0 or self.max_bps <= 0:
            raise ValueError("min_answers, timeout_s or max_bps out of range")


@dataclass(frozen=True)
class UploadEstimate:
    """What one train measured; ``bps`` None when too few answers came back."""

    server: Addr
    sent: int
    answered: int
    spread_s: float  # between the first and the last answer
    bps: int | None
    capped: bool = False  # faster than the clock could time: at least ``bps``

    def to_json(self) -> dict[str, Any]:
        """The estimate as one JSON-ready document."""
        return {
            "server": f"{self.server[0]}:{self.server[1]}",
            "sent": self.sent,
            "answered": self.answered,
            "spread_ms": round(self.spread_s * 1000, 3),
            "bps": self.bps,
            "capped": self.capped,
        }


@dataclass
class UploadProbe:
    """One packet train to ``server`` (sans-I/O: time is passed in)."""

    server: Addr
    config: UploadConfig = field(default_factory=UploadConfig)
    random: Callable[[int], bytes] = os.urandom
    result: UploadEstimate | None = None
    dropped: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._ids = [self.random(TRANSACTION_ID_SIZE) for _ in range(self.config.count)]
        self._position = {txid: index for index, txid in enumerate(self._ids)}
        self._arrivals: dict[int, float] = {}  # position in the train -> arrival time
        self._sent_at: float | None = None
        padding = self.config.size - HEADER_SIZE - _ATTRIBUTE_HEADER
        self._padding = padding - padding % 4  # attributes are padded to 4 bytes
        version = 6 if ":" in self.server[0] else 4
        self.request_size = HEADER_SIZE + _ATTRIBUTE_HEADER + self._padding
        """Each request's UDP payload, in bytes."""
        self._wire_size = self.request_size + _IP_UDP_HEADERS[version]

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """The whole train, once (nothing afterwards): send them back to back."""
        if self._sent_at is not None:
            return []
        self._sent_at = now
        request = StunMessage(BINDING, MessageClass.REQUEST, b"", padding=self._padding)
        return [(encode(replace(request, transaction_id=txid)), self.server) for txid in self._ids]

    def receive(self, data: bytes, source: Addr, now: float) -> None:
        """An answer (or anything else) from ``source``, arrived at ``now``."""
        if self.result is not None:
            self.dropped["late"] += 1
            return
        reason = self._check(data, source, now)
        if reason is not None:
            self.dropped[reason] += 1
            return
        if len(self._arrivals) == len(self._ids):
            self._finish()

    def _check(self, data: bytes, source: Addr, now: float) -> str | None:
        if source != self.server:
            return "foreign-source"
        try:
            message = decode(data)
        except StunError as exc:
            return exc.reason
        if message.method != BINDING or message.message_class is not MessageClass.SUCCESS:
            return "not-binding-success"
        position = self._position.get(message.transaction_id)
        if position is None:
            return "unknown-transaction"
        if position in self._arrivals:
            return "duplicate"
        self._arrivals[position] = now
        return None

    def get_timer(self) -> float | None:
        """When the train is given up for what came back (None: finished or not sent)."""
        if self.result is not None or self._sent_at is None:
            return None
        return self._sent_at + self.config.timeout_s

    def handle_timer(self, now: float) -> None:
        """Past the deadline: estimate from what came back."""
        timer = self.get_timer()
        if timer is not None and now >= timer:
            self._finish()

    def _finish(self) -> None:
        arrivals = sorted(self._arrivals.items(), key=lambda item: (item[1], item[0]))
        sent, answered = len(self._ids) if self._sent_at is not None else 0, len(arrivals)
        if answered < self.config.min_answers:
            self.result = UploadEstimate(self.server, sent, answered, 0.0, None)
            return
        (first, t_first), (last, t_last) = arrivals[0], arrivals[-1]
        spacing = max(last - first, answered - 1)  # reordered: at least the answers between
        bits = spacing * self._wire_size * 8
        spread = t_last - t_first
        capped = spread <= 0 or bits / spread >= self.config.max_bps
        bps = self.config.max_bps if capped else int(bits / spread)
        self.result = UploadEstimate(self.server, sent, answered, spread, bps, capped)
