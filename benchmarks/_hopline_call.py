"""A real Hopline call on loopback, for the voice benchmark's whole-stack CPU figure.

The voice benchmark times Hopline's voice stream on a simulated clock, which
leaves out what a real call also costs: sealing every datagram, the secure
connection and link layers, the sockets, the asyncio event loop and the
20 ms media tick. This module measures that too, the same way the aiortc
call is measured: a login server and two supernodes run as separate
processes (not counted), and two logged-in users in *this* process, each
with its own session, path manager and call service, talk for the given
time, alice playing the speech and bob playing it back. The CPU time of
this process while the call runs, divided by the two parties, is the
figure. The call runs on the event loop the daemon uses
(:func:`hopline.runtime.loop.run`: uvloop when installed), since that is
what a real call costs.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from hopline.calls.service import CallConfig, CallService
from hopline.calls.state import CallState
from hopline.client.session import ClientSession
from hopline.demo.cluster import Cluster, Proc
from hopline.media.audio import write_wav
from hopline.path.manager import PathManager
from hopline.runtime.loop import run as run_loop
from hopline.testing.network import logged_in, start_network


async def _call(workdir: Path, ls: Proc, speech: Path, seconds: float) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) while the call is in progress."""
    services: list[CallService] = []
    closers = []
    run = int(workdir.name[3:])  # runN: its own users and source addresses (the
    for name, host in (("alice", 31 + 2 * run), ("bob", 32 + 2 * run)):  # LS throttles)
        bind = f"127.0.0.{host}"
        workdir.mkdir(parents=True, exist_ok=True)
        profile = await logged_in(workdir, ls, f"{name}{run}", bind=bind)
        session = ClientSession(profile)
        await session.connect()
        paths = PathManager(session)
        await paths.start()
        service = CallService(paths, config=CallConfig(devices=False))
        service.start()
        services.append(service)
        closers.append((service, paths, session))
    try:
        callee = services[1].paths.session.user
        outgoing = await services[0].place(callee, play=str(speech), record=None, seconds=seconds)
        await services[1].answer(None, play=str(speech), record=None, seconds=None, wait_s=15)
        while outgoing.state is not CallState.ACTIVE:
            await asyncio.sleep(0.01)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.wait_for(outgoing.ended.wait(), seconds + 30)
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        for service, paths, session in closers:
            await service.close()
            await paths.close()
            await session.close()


def call_cpu(speech: np.ndarray, seconds: float, runs: int = 3) -> tuple[float, float]:
    """CPU seconds per minute of call per party for a real call (the median of
    ``runs`` calls: real time on a shared machine is noisy), and a call's length."""
    figures = []
    with tempfile.TemporaryDirectory(prefix="hopline-voice-") as tmp:
        workdir = Path(tmp)
        path = workdir / "speech.wav"
        write_wav(path, speech)
        with Cluster(workdir / "logs") as cluster:
            ls, _ = start_network(cluster, workdir, supernodes=2)
            for n in range(runs):
                cpu, wall = run_loop(_call(workdir / f"run{n}", ls, path, seconds))
                figures.append(cpu / 2 / (wall / 60))
    return statistics.median(figures), wall
