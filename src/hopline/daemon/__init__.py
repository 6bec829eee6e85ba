"""The client daemon (``hopline up``): one profile's node, kept online, behind the local API."""

from hopline.daemon.errors import DaemonError
from hopline.daemon.files import AlreadyRunning, DaemonFileError, DaemonInfo, read_daemon_info
from hopline.daemon.node import ClientDaemon, DaemonConfig, DaemonState

__all__ = [
    "AlreadyRunning",
    "ClientDaemon",
    "DaemonConfig",
    "DaemonError",
    "DaemonFileError",
    "DaemonInfo",
    "DaemonState",
    "read_daemon_info",
]
