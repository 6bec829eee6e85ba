"""The daemon's own parts: the profile lock and files, and the event stream."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hopline.daemon.events import QUEUE_EVENTS, EventBus
from hopline.daemon.files import (
    AlreadyRunning,
    ProfileLock,
    new_token,
    read_daemon_info,
    write_daemon_info,
)


def test_a_second_lock_on_a_profile_is_refused(tmp_path: Path) -> None:
    with ProfileLock(tmp_path):
        with pytest.raises(AlreadyRunning) as refused:
            ProfileLock(tmp_path).acquire()
        assert refused.value.pid == os.getpid()
    with ProfileLock(tmp_path):  # released: can be taken again
        pass


def test_daemon_info_is_found_only_while_locked(tmp_path: Path) -> None:
    assert read_daemon_info(tmp_path) is None
    with ProfileLock(tmp_path):
        assert read_daemon_info(tmp_path) is None  # locked but not serving yet
        token = new_token(tmp_path)
        write_daemon_info(tmp_path, "http://127.0.0.1:1234")
        found = read_daemon_info(tmp_path)
        assert found is not None
        info, read_token = found
        assert (info.api, info.pid, read_token) == ("http://127.0.0.1:1234", os.getpid(), token)
        assert (tmp_path / "api.token").stat().st_mode & 0o777 == 0o600
    assert read_daemon_info(tmp_path) is None
    assert not (tmp_path / "api.token").exists()


def test_stale_files_of_a_dead_daemon_read_as_not_running(tmp_path: Path) -> None:
    with ProfileLock(tmp_path):
        new_token(tmp_path)
        write_daemon_info(tmp_path, "http://127.0.0.1:1234")
        (tmp_path / "daemon.json").rename(tmp_path / "saved.json")
        (tmp_path / "api.token").rename(tmp_path / "saved.token")
    (tmp_path / "saved.json").rename(tmp_path / "daemon.json")  # as a crash leaves them
    (tmp_path / "saved.token").rename(tmp_path / "api.token")
    assert read_daemon_info(tmp_path) is None


async def test_a_slow_subscriber_loses_the_oldest_events_and_is_told() -> None:
    bus = EventBus()
    slow, fast = bus.subscribe(), bus.subscribe()
    for n in range(QUEUE_EVENTS + 10):
        bus.emit("tick", n=n)
        if n < 3:
            assert (await fast.next()).data == {"n": n}
    first = await slow.next()
    assert first.data == {"n": 10} and first.missed == 10
    assert (await slow.next()).missed == 0
    bus.unsubscribe(slow)
    bus.emit("tick", n=-1)
    assert bus.subscribers == 1 and slow.queue.qsize() == QUEUE_EVENTS - 2
