"""Hopline: an open peer-to-peer voice and messaging network.

The package is split by layer, bottom up:

* :mod:`hopline.wire` — object-list message encoding (the command table).
* :mod:`hopline.transport` — sans-I/O framing, fragmentation and channels.
* :mod:`hopline.crypto` — identities, certificates and secure sessions.
* :mod:`hopline.runtime` — the asyncio shells that own sockets and timers.
* :mod:`hopline.testing` — deterministic clocks and impaired links for tests.
* :mod:`hopline.cli` — the ``hopline`` command line.
"""

__version__ = "0.1.0"
