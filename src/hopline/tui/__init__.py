"""The Hopline terminal UI (``hopline tui``): a textual client of the daemon's local API.

:class:`HoplineApp` is the application; :class:`TuiState` is the model it
draws, folded from API replies and daemon events and testable on its own.
"""

from hopline.tui.app import HoplineApp
from hopline.tui.state import TuiState

__all__ = ["HoplineApp", "TuiState"]
