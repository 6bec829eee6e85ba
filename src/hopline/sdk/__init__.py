"""Python SDK for the Hopline daemon's local API: ``Client.for_profile(path)``."""

from hopline.sdk.client import Client, DaemonNotRunning, HoplineError

__all__ = ["Client", "DaemonNotRunning", "HoplineError"]
