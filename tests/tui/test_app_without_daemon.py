"""The app on a profile without a daemon: it ends at once, code 1, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from hopline.tui.app import HoplineApp


async def test_the_app_exits_1_when_no_daemon_serves_the_profile(tmp_path: Path) -> None:
    app = HoplineApp(tmp_path / "nobody")
    async with app.run_test() as pilot:
        await pilot.pause()
    assert app.return_code == 1
    assert not app.is_running


def test_an_app_needs_a_profile_or_a_client() -> None:
    with pytest.raises(ValueError, match="profile"):
        HoplineApp()
