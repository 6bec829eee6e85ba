"""An auto-answer bot: answers every call to a Hopline user and plays a WAV file.

Run it next to a daemon that is logged in (``hopline up``, then ``hopline
login``)::

    python examples/auto_answer.py --profile ~/.hopline/default --play greeting.wav
    python examples/auto_answer.py --play greeting.wav --record-dir calls/ \\
        --seconds 30 --max-calls 10 --json

It is also a small tour of the Python SDK, :class:`hopline.sdk.Client`:

* ``Client.for_profile(path)`` finds the daemon serving a profile (the API
  address and token are in the profile directory) and raises
  :class:`hopline.sdk.DaemonNotRunning` when there is none. ``async with``
  closes its connections.
* ``client.status()`` says who is logged in and whether the daemon is online.
* ``client.events()`` is an async iterator over the daemon's event stream
  (a WebSocket): dicts with ``type`` (``call``, ``message``, ``presence``,
  ...) and ``data``. A ``call`` event carries the call's document each time
  its state changes: ``call_id``, ``peer``, ``direction``, ``state``
  (``ringing``, ``active``, ``ended``) and statistics.
* ``client.calls()`` lists the live calls (a bot also polls it now and then,
  so a call that rang while the stream was reconnecting is not missed).
* ``client.answer_call(call_id, play=..., record=..., seconds=...)`` answers:
  the daemon plays the WAV file as our voice, writes what the caller says to
  ``record``, and hangs up after ``seconds`` of talk.
* ``client.wait_call(call_id, timeout_s=...)`` long-polls until the call
  ends; ``client.hangup(call_id)`` ends it.
* Every refusal is a :class:`hopline.sdk.HoplineError` with a stable
  ``code`` (``no-such-call``, ``not-logged-in``, ...).

Output: one line per call on stdout (on stderr with ``--json``, where stdout
carries only the final report: one JSON document with every call's final
state). Ctrl-C (or SIGTERM) hangs up the calls in progress, prints the report
and exits 0. Exit codes: 0 done, 1 the daemon is not running or failed,
2 bad arguments (for example a WAV file that cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import WebSocketException

from hopline.api import models as m
from hopline.sdk import Client, DaemonNotRunning, HoplineError

PROG = "auto_answer"
POLL_S = 2.0  # how often live calls are listed, besides the event stream
WAIT_SLICE_S = 30.0  # one long-poll for the end of a call


class Usage(Exception):
    """Bad arguments: exit 2."""


class Failure(Exception):
    """The daemon is missing or failed: exit 1."""


@dataclass(frozen=True)
class Options:
    """What the bot was asked to do."""

    profile: Path
    play: Path
    record_dir: Path | None
    seconds: float | None
    max_calls: int | None
    json: bool


@dataclass
class Bot:
    """Answers ringing calls, follows each to its end, and keeps the reports."""

    client: Client
    options: Options
    reports: list[dict[str, Any]] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    _taken: set[str] = field(default_factory=set)
    _answered: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        """Answer calls until ``stop`` is set or ``--max-calls`` calls have ended."""
        watchers = [asyncio.create_task(self._listen()), asyncio.create_task(self._poll())]
        enders = [asyncio.create_task(stop.wait()), asyncio.create_task(self.finished.wait())]
        try:
            done, _ = await asyncio.wait([*watchers, *enders], return_when=asyncio.FIRST_COMPLETED)
            for task in done & set(watchers):
                task.result()  # a failed watcher ends the bot with its error
        finally:
            for task in [*watchers, *enders]:
                task.cancel()
            await asyncio.gather(*watchers, *enders, return_exceptions=True)
            await self._hang_up_all()

    # ------------------------------------------------------------ finding calls

    async def _listen(self) -> None:
        async for event in self.client.events():
            if event.get("type") == "call":
                self._consider(event.get("data") or {})

    async def _poll(self) -> None:
        while True:
            for call in await self.client.calls():
                self._consider(call.model_dump())
            await asyncio.sleep(POLL_S)

    def _consider(self, doc: dict[str, Any]) -> None:
        call_id = str(doc.get("call_id", ""))
        ringing = doc.get("direction") == "incoming" and doc.get("state") == "ringing"
        if not ringing or call_id in self._taken or self._enough_taken():
            return
        self._taken.add(call_id)
        task = asyncio.create_task(self._take(call_id, str(doc.get("peer", "?"))))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enough_taken(self) -> bool:
        limit = self.options.max_calls
        return limit is not None and len(self._taken) >= limit

    # ------------------------------------------------------------ one call

    async def _take(self, call_id: str, peer: str) -> None:
        record = self._recording_path(call_id, peer)
        try:
            await self.client.answer_call(
                call_id, play=self.options.play, record=record, seconds=self.options.seconds
            )
            self._answered.add(call_id)
            ended = await self._until_ended(call_id)
            self._report(ended.model_dump(exclude_none=True), answered=True)
        except HoplineError as exc:  # e.g. the caller gave up before we answered
            self._report({"call_id": call_id, "peer": peer, "error": str(exc)}, answered=False)
        finally:
            self._answered.discard(call_id)
            self._check_finished()

    def _recording_path(self, call_id: str, peer: str) -> Path | None:
        if self.options.record_dir is None:
            return None
        return self.options.record_dir / f"{peer}-{call_id[:8]}.wav"

    async def _until_ended(self, call_id: str) -> m.Call:
        while True:
            call = await self.client.wait_call(call_id, timeout_s=WAIT_SLICE_S)
            if call.state == "ended":
                return call

    async def _hang_up_all(self) -> None:
        for call_id in list(self._answered):
            with contextlib.suppress(HoplineError):  # it may have just ended by itself
                await self.client.hangup(call_id)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=WAIT_SLICE_S)

    def _report(self, doc: dict[str, Any], *, answered: bool) -> None:
        doc["answered"] = answered
        self.reports.append(doc)
        out = sys.stderr if self.options.json else sys.stdout
        print(describe(doc), file=out, flush=True)

    def _check_finished(self) -> None:
        limit = self.options.max_calls
        if limit is not None and len(self.reports) >= limit:
            self.finished.set()


def describe(doc: dict[str, Any]) -> str:
    """One line about one call."""
    peer = doc.get("peer", "?")
    if not doc.get("answered"):
        return f"call from {peer}: not answered ({doc.get('error', 'unknown')})"
    line = f"call from {peer}: {doc.get('duration_s') or 0:.1f} s, {doc.get('end_reason')}"
    if doc.get("mos_estimate") is not None:
        line += f", MOS {doc['mos_estimate']:.1f}"
    line += f", {doc.get('packets_received', 0)} packets in"
    if doc.get("record"):
        line += f", recorded to {doc['record']}"
    return line


# ---------------------------------------------------------------- arguments


def parse(argv: list[str]) -> Options:
    """The options, checked (raises :class:`Usage`)."""
    parser = argparse.ArgumentParser(prog=PROG, description="Answer every Hopline call.")
    parser.add_argument("--profile", help="profile directory (default: $HOPLINE_PROFILE)")
    parser.add_argument("--play", required=True, help="WAV file played to every caller")
    parser.add_argument("--record-dir", help="write each call's audio here (PEER-ID.wav)")
    parser.add_argument("--seconds", type=float, help="hang up after this long of talk")
    parser.add_argument("--max-calls", type=int, help="stop after this many calls")
    parser.add_argument("--json", action="store_true", help="print a JSON report at the end")
    args = parser.parse_args(argv)
    profile = args.profile or os.environ.get("HOPLINE_PROFILE")
    if not profile:
        raise Usage("no profile: pass --profile DIR or set $HOPLINE_PROFILE")
    if args.seconds is not None and not 0 < args.seconds <= m.MAX_CALL_SECONDS:
        raise Usage(f"--seconds must be above 0 and at most {m.MAX_CALL_SECONDS:.0f}")
    if args.max_calls is not None and args.max_calls < 1:
        raise Usage("--max-calls must be at least 1")
    return Options(
        profile=Path(profile).expanduser(),
        play=_readable_wav(Path(args.play)),
        record_dir=_writable_dir(args.record_dir),
        seconds=args.seconds,
        max_calls=args.max_calls,
        json=args.json,
    )


def _readable_wav(path: Path) -> Path:
    try:
        with wave.open(str(path), "rb") as audio:
            frames = audio.getnframes()
    except FileNotFoundError:
        raise Usage(f"--play: no such file: {path}") from None
    except (OSError, wave.Error, EOFError) as exc:
        raise Usage(f"--play: not a readable WAV file: {path} ({exc})") from None
    if frames == 0:
        raise Usage(f"--play: the WAV file holds no audio: {path}")
    return path.absolute()


def _writable_dir(text: str | None) -> Path | None:
    if text is None:
        return None
    directory = Path(text).expanduser().absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Usage(f"--record-dir: cannot create {directory}: {exc.strerror}") from None
    return directory


# ---------------------------------------------------------------- main


async def serve(options: Options) -> list[dict[str, Any]]:
    """Connect to the daemon, answer calls until told to stop; the call reports."""
    try:
        client = Client.for_profile(options.profile)
    except DaemonNotRunning as exc:
        raise Failure(f"{exc}: start it with: hopline up --profile {options.profile}") from None
    async with client:
        status = await _status(client, options.profile)
        if status.user is None:
            raise Failure(f"{options.profile} is not logged in: run hopline login USER")
        print(f"{PROG}: answering calls for {status.user} (Ctrl-C stops)", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        bot = Bot(client, options)
        try:
            await bot.run(stop)
        except (HoplineError, OSError, WebSocketException) as exc:
            raise Failure(f"lost the daemon: {exc}") from None
        return bot.reports


async def _status(client: Client, profile: Path) -> m.Status:
    try:
        return await client.status()
    except HoplineError as exc:  # a daemon.json left behind by a daemon that died
        raise Failure(f"{exc}: start the daemon with: hopline up --profile {profile}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the bot; the exit code."""
    try:
        options = parse(sys.argv[1:] if argv is None else argv)
        reports = asyncio.run(serve(options))
    except Usage as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if options.json:
        answered = sum(1 for doc in reports if doc.get("answered"))
        print(json.dumps({"calls": reports, "answered": answered}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
