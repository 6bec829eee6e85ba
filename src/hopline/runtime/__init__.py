"""asyncio shells that own sockets and timers and drive sans-I/O links.

The protocol lives in :mod:`hopline.transport` and never does I/O; this
package is the thin layer that does, in the style of aioquic's
``asyncio/protocol.py``:

* :mod:`~hopline.runtime.handle` -- :class:`LinkHandle`: one link, one
  asyncio timer re-armed from ``Link.get_timer()``, a message queue, and
  awaitable backpressure (``send``) and drain (``flush``).
* :mod:`~hopline.runtime.udp` -- :class:`UdpEndpoint`: one UDP socket, one
  link per remote address (IPv4 or IPv6).
* :mod:`~hopline.runtime.tcp` -- :func:`tcp_connect` / :class:`TcpListener`:
  the same link over a TCP stream with 2-byte length-prefixed framing.
* :mod:`~hopline.runtime.loop` -- :func:`run`: uvloop when importable,
  asyncio otherwise.
"""

from hopline.runtime.handle import LinkHandle
from hopline.runtime.loop import run, uvloop_available
from hopline.runtime.tcp import FramingError, LengthPrefixDecoder, TcpListener, tcp_connect
from hopline.runtime.udp import UdpEndpoint

__all__ = [
    "FramingError",
    "LengthPrefixDecoder",
    "LinkHandle",
    "TcpListener",
    "UdpEndpoint",
    "run",
    "tcp_connect",
    "uvloop_available",
]
