"""Socket settings shared by the UDP shells.

A link keeps up to a window of 256 full datagrams in flight; Linux's default
UDP receive buffer (about 208 KiB) holds fewer, so a busy receiver drops
datagrams in the kernel and the link has to retransmit them. Asking for
4 MiB buffers (the kernel caps the request at ``net.core.rmem_max``) keeps
a whole window in the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

BUFFER_BYTES = 4 * 1024 * 1024


def enlarge_buffers(transport: asyncio.BaseTransport, size: int = BUFFER_BYTES) -> int:
    """Ask for ``size``-byte send and receive buffers; return the receive size granted."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):  # a refused size leaves the default: still works
            sock.setsockopt(socket.SOL_SOCKET, option, size)
    granted: int = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return granted
