"""The client daemon: one profile's ordinary node, kept online.

:class:`ClientDaemon` owns the profile while ``hopline up`` runs. It is the
only writer of the profile's certificate, host cache and settings, and
everything other programs and the CLI do goes through it (the local API in
:mod:`hopline.api`).

Life of a daemon::

    logged-out --login--> connecting --home found--> online
        ^                     ^  |                     |
        |                     |  +-- no supernode -----+-- home lost --> re-homing
        +------ logout -------+------------------------+   (ClientSession.rehome)

* **Connecting** retries with exponential backoff (1 s up to 30 s) for as long
  as the network is down: the daemon stays up across network changes.
* **Online**, the :class:`~hopline.client.session.ClientSession` keeps the
  home alive and re-homes by itself; the daemon renews the certificate when
  half its lifetime has passed and refreshes the host cache from the overlay.
  Each time it comes online it discovers its NAT against the home and
  another supernode (:func:`~hopline.nat.netcheck.run_netcheck`, in the
  background): ``status`` shows the NAT type, and the presence record
  carries it (``nat_class``) for peers choosing how to reach this device.
* **Stopping** (SIGINT/SIGTERM, or :meth:`ClientDaemon.stop`) publishes an
  "offline" presence so lookups see the user leave at once, saves the host
  cache and closes the sockets.

Failures reach callers as :class:`DaemonError` subclasses, each with a stable
``code`` and the HTTP status the API answers with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from hopline.calls.conference import ConfState
from hopline.calls.conference_service import (
    ConferenceConfig,
    ConferenceError,
    ConferenceService,
    LiveConference,
    NoSuchConference,
)
from hopline.calls.service import CallConfig, CallError, CallService
from hopline.calls.service import NoSuchCall as NoCall
from hopline.client import account
from hopline.client.profile import Profile, ProfileError
from hopline.client.session import ClientSession, PresenceStatus, SessionConfig
from hopline.daemon.errors import (
    AlreadyLoggedIn,
    BadInput,
    ConferenceRefused,
    NoSuchCall,
    NoSuchItem,
    NotLoggedIn,
    NotOnline,
    Refused,
    Unreachable,
    UserOffline,
)
from hopline.daemon.events import EventBus
from hopline.daemon.messenger import Messenger
from hopline.files.service import FileConfig, FileService
from hopline.identity import CertificateError, CertificateVerifier
from hopline.identity.names import InvalidUsername, canonical_username
from hopline.media.audio import AudioError
from hopline.messaging.contacts import Presence
from hopline.messaging.contacts import PresenceStatus as ShownStatus
from hopline.messaging.history import History
from hopline.messaging.service import MessagingConfig, MessagingService
from hopline.path.manager import PathConfig, PathManager
from hopline.runtime.endpoint import ConnectError, EndpointError, RequestError
from hopline.wire import ErrorCode
from hopline.wire.call import CALL_ID_SIZE
from hopline.wire.conference import CONF_ID_SIZE, MAX_MEMBERS
from hopline.wire.directory import LookupState, SearchField

log = logging.getLogger("hopline.daemon")
T = TypeVar("T")


NETCHECK_SERVERS = 3  # the home and two more supernodes from the host cache


class DaemonState(StrEnum):
    """Where the daemon is in its life (see the module docstring)."""

    LOGGED_OUT = "logged-out"
    CONNECTING = "connecting"
    ONLINE = "online"
    REHOMING = "re-homing"
    STOPPED = "stopped"


# ---------------------------------------------------------------- config


@dataclass
class DaemonConfig:
    """Timers and options of a daemon."""

    session: SessionConfig = field(default_factory=SessionConfig)
    retry_initial_s: float = 1.0
    retry_max_s: float = 30.0
    renew_check_s: float = 600.0
    leave_timeout_s: float = 2.0
    netcheck_timeout_s: float = 10.0
    paths: PathConfig = field(default_factory=PathConfig)
    calls: CallConfig = field(default_factory=CallConfig)
    conferences: ConferenceConfig = field(default_factory=ConferenceConfig)
    messaging: MessagingConfig = field(default_factory=MessagingConfig)
    files: FileConfig = field(default_factory=FileConfig)
    downloads: Path | None = None  # where accepted files go; default: PROFILE/downloads


SEARCH_FIELDS = {
    "name": SearchField.NAME,
    "city": SearchField.CITY,
    "country": SearchField.COUNTRY,
    "language": SearchField.LANGUAGE,
}
LOOKUP_STATES = {LookupState.NOT_FOUND: "unknown", LookupState.ONLINE: "online"}
STATUS_NAMES = {s: s.name.lower() for s in PresenceStatus}
STATUS_BY_NAME = {"online": 1, "away": 2, "dnd": 3, "invisible": 4}


class ClientDaemon:
    """One profile's node (see the module docstring)."""

    def __init__(self, profile: Profile, config: DaemonConfig | None = None) -> None:
        self.profile = profile
        self.config = config or DaemonConfig()
        self.events = EventBus()
        self.session: ClientSession | None = None
        self.paths: PathManager | None = None
        self.calls: CallService | None = None
        self.conferences: ConferenceService | None = None
        self.messaging: MessagingService | None = None
        self.files: FileService | None = None
        self.messenger = Messenger(self._chat_services)
        self._history: History | None = None
        self._history_path: Path | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self.started = time.time()
        self.last_error: str | None = None
        self._online_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._netcheck_task: asyncio.Task[None] | None = None
        self.nat_report: dict[str, Any] | None = None  # the last netcheck, as JSON
        self._state = DaemonState.LOGGED_OUT
        self._stopped = asyncio.Event()
        self._stop_requested = asyncio.Event()

    # ------------------------------------------------------------ life

    @property
    def state(self) -> DaemonState:
        """The current state; an online session without a home is re-homing."""
        session = self.session
        if self._state == DaemonState.ONLINE and session is not None and not session.connected:
            return DaemonState.REHOMING
        return self._state

    def _set_state(self, state: DaemonState) -> None:
        if state != self._state:
            self._state = state
            self.events.emit("state", state=str(state))
            log.info("daemon %s", state)

    async def start(self) -> None:
        """Go online if the profile holds a usable certificate."""
        if self._usable_certificate():
            self._go_online()

    def _usable_certificate(self) -> bool:
        certificate = self.profile.certificate
        if certificate is None:
            return False
        try:
            CertificateVerifier(self.profile.ls_key).verify(certificate, time.time())
        except CertificateError as exc:
            log.warning("stored certificate unusable (%s): log in again", exc.reason)
            return False
        return True

    def _go_online(self) -> None:
        self._set_state(DaemonState.CONNECTING)
        self._online_task = asyncio.create_task(self._stay_online(), name="hopline-online")
        self._renew_task = asyncio.create_task(self._keep_renewed(), name="hopline-renew")
        for task in (self._online_task, self._renew_task):
            task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self.last_error = f"{task.get_name()} failed: {task.exception()!r}"
        log.error("%s", self.last_error, exc_info=task.exception())

    async def _stay_online(self) -> None:
        """Connect (retrying while the network is down), then keep the session up."""
        delay = self.config.retry_initial_s
        while True:
            session = ClientSession(self.profile, self.config.session)
            try:
                await session.connect()
            except (EndpointError, OSError) as exc:
                await session.close()
                self.last_error = f"no supernode reachable: {exc}"
                log.warning("%s; retrying in %.0f s", self.last_error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            self.session, self.last_error = session, None
            await self._start_services(session)
            self._set_state(DaemonState.ONLINE)
            self._discover_nat(session)
            self.events.emit("home", **self._home_json(session))
            session.home_listeners.append(partial(self._rehomed, session))
            delay = self.config.retry_initial_s
            try:
                await session.run()
            except EndpointError as exc:  # e.g. a refresh refused: start over
                self.last_error = f"session ended: {exc}"
                log.warning("%s; connecting again", self.last_error)
            await self._stop_services()
            self.session = None
            await session.close()
            self._set_state(DaemonState.CONNECTING)

    async def _start_services(self, session: ClientSession) -> None:
        """Paths to peers and the services sharing them, for as long as this session lives.

        Every path, ours or a peer's, is handed to calls, messages and files
        (``path_listeners``) before it is used; the accept queue is only
        drained, so peers opening paths never fill it.
        """
        paths = PathManager(session, self.config.paths)
        await paths.start()
        name = str(self.public_profile().get("full_name") or "")
        calls = CallService(
            paths,
            config=self.config.calls,
            on_change=lambda doc: self.events.emit("call", **doc),
            display_name=name,
        )
        messaging = MessagingService(
            session,
            paths,
            self._open_history(session.user),
            config=replace(
                self.config.messaging,
                display_name=name,
                state_file=f"messaging-{session.user}.json",
            ),
            on_event=self._on_messaging_event,
        )
        files = FileService(
            paths,
            downloads=self._downloads(),
            config=self.config.files,
            on_event=lambda doc: self.events.emit("file", **doc),
        )
        saved = self.profile.config.get("presence") or {}
        messaging.presence = Presence(
            ShownStatus(saved.get("status", ShownStatus.ONLINE)), saved.get("mood") or ""
        )
        paths.path_listeners += [calls.attach, messaging.attach, files.attach]
        calls.start(accept_paths=False)
        files.start(accept_paths=False)
        self.conferences = ConferenceService(
            paths,
            calls=calls,
            config=self.config.conferences,
            on_change=lambda doc: self.events.emit("conference", **doc),
        )
        self.conferences.start_serving()  # after the others: conf.* first, the rest on to them
        self.paths, self.calls, self.messaging, self.files = paths, calls, messaging, files
        self._accept_task = asyncio.create_task(self._drain_accepted(paths), name="hopline-accept")
        await messaging.start(accept_paths=False)  # fetches what waited offline first

    @staticmethod
    async def _drain_accepted(paths: PathManager) -> None:
        """Paths peers open reach the services through the listeners; keep the queue empty."""
        while True:
            await paths.accept()

    def _open_history(self, user: str) -> History:
        """The user's message history in the profile (one file per user)."""
        path = self.profile.path / f"history-{user}.sqlite3"
        if self._history is not None and self._history_path != path:
            self._history.close()
            self._history = None
        if self._history is None:
            self._history, self._history_path = History.open(path), path
        return self._history

    def _downloads(self) -> Path:
        directory = self.config.downloads or self.profile.path / "downloads"
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _on_messaging_event(self, doc: dict[str, Any]) -> None:
        event = dict(doc)
        kind = str(event.pop("type", "message"))
        self.events.emit(kind, **event)

    def _chat_services(self) -> tuple[MessagingService | None, FileService | None]:
        self._online_session()
        return self.messaging, self.files

    async def _stop_services(self) -> None:
        calls, messaging, files, paths = self.calls, self.messaging, self.files, self.paths
        conferences, self.conferences = self.conferences, None
        self.calls = self.paths = self.messaging = self.files = None
        if self._accept_task is not None:
            self._accept_task.cancel()
            self._accept_task = None
        if conferences is not None:  # before calls: a conference gives its paths back
            await conferences.close()
        for service in (calls, messaging, files):
            if service is not None:
                await service.close()
        if paths is not None:
            await paths.close()

    def _rehomed(self, session: ClientSession) -> None:
        """The session found a new home (a network change, or the old home died):
        say so, and learn the NAT type again: the network may be another one."""
        if self.session is not session:
            return
        self.events.emit("home", **self._home_json(session))
        task = self._netcheck_task
        if task is None or task.done():
            self._discover_nat(session)

    async def netcheck(self, *, fresh: bool) -> dict[str, Any]:
        """The last NAT check of this network (``fresh``: run one now, or wait for
        the one running); the first is made when the daemon goes online."""
        session = self._online_session()
        task = self._netcheck_task
        if fresh and (task is None or task.done()):
            self._discover_nat(session)
            task = self._netcheck_task
        if (fresh or self.nat_report is None) and task is not None:
            await asyncio.wait({task})  # never cancels it; its failure is reported below
            failed = None if task.cancelled() else task.exception()
            if failed is not None:
                raise Unreachable(f"the NAT check failed: {failed}")
        if self.nat_report is None:
            raise Unreachable("no NAT check has finished yet")
        return dict(self.nat_report)

    def _discover_nat(self, session: ClientSession) -> None:
        task = asyncio.create_task(self._netcheck(session), name="hopline-netcheck")
        task.add_done_callback(self._task_ended)
        self._netcheck_task = task

    async def _netcheck(self, session: ClientSession) -> None:
        """Learn this network's NAT type; publish it with the presence record."""
        from hopline.nat.netcheck import run_netcheck  # noqa: PLC0415 -- only once online

        servers = [session.home_address] if session.home_address is not None else []
        servers += session.cache.candidates(time.time(), NETCHECK_SERVERS)
        servers = list(dict.fromkeys(servers))[:NETCHECK_SERVERS]
        report = await run_netcheck(servers, timeout=self.config.netcheck_timeout_s)
        self.nat_report = {
            **report.to_json(),
            "servers": [str(server) for server in servers],
            "checked_at": time.time(),
        }
        session.nat_class = int(report.nat_type)
        if self.paths is not None:
            self.paths.nat = report
        self.events.emit("nat", **self.nat_report)
        if session.connected:
            with contextlib.suppress(EndpointError):  # the next refresh publishes it anyway
                await session.publish()

    async def _keep_renewed(self) -> None:
        while True:
            await asyncio.sleep(self.config.renew_check_s)
            body = self.profile.certificate_body()
            if body is None or time.time() < (body.issued_at + body.expires_at) / 2:
                continue
            try:
                await account.renew(self.profile)
            except (EndpointError, PermissionError) as exc:
                log.warning("certificate renewal failed: %s", exc)
                continue
            if self.session is not None:
                self.session.endpoint.set_certificate(self.profile.certificate)
            log.info("certificate renewed")

    async def _go_offline(self) -> None:
        for task in (self._online_task, self._renew_task, self._netcheck_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._online_task = self._renew_task = self._netcheck_task = None
        await self._stop_services()
        if self.session is not None:
            await self.session.leave(self.config.leave_timeout_s)
            self.session = None

    def request_stop(self) -> None:
        """Ask the process running this daemon to stop it (see :meth:`stop_requested`)."""
        self._stop_requested.set()

    async def stop_requested(self) -> None:
        """Wait for :meth:`request_stop` (the API's shutdown, or a signal)."""
        await self._stop_requested.wait()

    async def stop(self) -> None:
        """Leave the network cleanly; :meth:`wait_stopped` returns afterwards."""
        await self._go_offline()
        if self._history is not None:
            self._history.close()
            self._history = None
        self._set_state(DaemonState.STOPPED)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`stop` has finished."""
        await self._stopped.wait()

    # ------------------------------------------------------------ accounts

    async def register(self, username: str, password: str, fields: dict[str, Any]) -> str:
        """Create an account on the login server; returns the canonical name."""
        return await _network(account.register(self.profile, username, password, **fields))

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in (the login server certifies this device) and go online."""
        name = _canonical(username)
        current = self.user
        if current is not None and current != name:
            raise AlreadyLoggedIn(f"logged in as {current}: log out first")
        result = await _network(account.login(self.profile, name, password))
        await self._go_offline()
        self._go_online()
        self.events.emit("login", user=result.username)
        return {"user": result.username, "expires_at": result.expires_at}

    async def logout(self) -> dict[str, Any]:
        """Go offline and revoke this device's certificate (locally forgotten anyway)."""
        user = self.user
        if user is None:
            raise NotLoggedIn("not logged in")
        await self._go_offline()
        revoked = True
        try:
            await account.logout(self.profile)
        except (EndpointError, PermissionError) as exc:
            log.warning("login server did not revoke the certificate: %s", exc)
            self.profile.forget_certificate()
            revoked = False
        self._set_state(DaemonState.LOGGED_OUT)
        self.events.emit("logout", user=user)
        return {"user": user, "revoked": revoked}

    @property
    def user(self) -> str | None:
        """The logged-in user, if any."""
        body = self.profile.certificate_body()
        return body.subject if body is not None else None

    # ------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Who, which supernode, public address, presence: the ``status`` document."""
        body = self.profile.certificate_body()
        session = self.session
        presence = self.profile.config.get("presence") or {}
        status = PresenceStatus(presence.get("status", PresenceStatus.ONLINE))
        doc: dict[str, Any] = {
            "user": body.subject if body else None,
            "state": str(self.state),
            "profile": str(self.profile.path),
            "device_id": self.profile.device_id.hex(),
            "supernode": None,
            "public_address": None,
            "nat": (self.nat_report or {}).get("nat_type", "unknown"),
            "presence": {"status": STATUS_NAMES[status], "mood": presence.get("mood")},
            "certificate_expires": body.expires_at if body else None,
            "rehomes": session.rehomes if session else 0,
            "host_cache": len(session.cache) if session else None,
            "uptime_s": round(time.time() - self.started, 1),
            "last_error": self.last_error,
        }
        if session is not None and session.home is not None:
            doc["supernode"] = self._home_json(session)
            doc["public_address"] = str(session.observed) if session.observed else None
        return doc

    @staticmethod
    def _home_json(session: ClientSession) -> dict[str, Any]:
        home = session.home
        name = home.peer.name if home is not None and home.peer is not None else None
        return {
            "name": name,
            "address": str(session.home_address) if session.home_address else None,
            "transport": session.home_transport,
            "rtt_ms": session.home_rtt_ms,
            "since": session.connected_at,
        }

    def _online_session(self) -> ClientSession:
        if self.user is None:
            raise NotLoggedIn("not logged in: run 'hopline login USER'")
        session = self.session
        if session is None or not session.connected:
            raise NotOnline(f"not connected to a supernode yet ({self.last_error or 'connecting'})")
        return session

    # ------------------------------------------------------------ directory

    async def lookup(self, username: str) -> dict[str, Any]:
        """Where is ``username``: online, offline (last seen) or unknown."""
        name = _canonical(username)
        reply = await _network(self._online_session().lookup(name))
        state = LOOKUP_STATES.get(LookupState(reply.state), "offline")
        doc: dict[str, Any] = {"username": name, "state": state, "last_seen": reply.last_seen}
        record = reply.record
        if record is not None:
            doc["status"] = STATUS_NAMES.get(PresenceStatus(record.status), "online")
            doc["mood"] = record.mood
            doc["devices"] = len(record.devices)
            doc["last_seen"] = reply.last_seen or record.last_seen
        return doc

    async def search(self, query: str, by: str, limit: int, cursor: str | None) -> dict[str, Any]:
        """White-pages search (``by``: name, city, country, language, handle or any).

        ``any`` looks the query up as a handle and searches it as a name; the
        exact handle comes first.
        """
        if by == "handle":
            return {
                "query": query,
                "by": by,
                "results": await self._handle(query),
                "next_cursor": None,
            }
        if by == "any":
            exact = await self._handle(query) if _is_username(query) and cursor is None else []
            found = await self.search(query, "name", limit, cursor)
            seen = {hit["username"] for hit in exact}
            found["results"] = exact + [h for h in found["results"] if h["username"] not in seen]
            found["by"] = by
            return found
        if by not in SEARCH_FIELDS:
            raise BadInput(f"cannot search by {by!r}: use handle, name, city, country or language")
        session = self._online_session()
        reply = await _network(session.search(SEARCH_FIELDS[by], query, limit, cursor))
        results = [_profile_json(p) for p in reply.profiles]
        return {"query": query, "by": by, "results": results, "next_cursor": reply.next_cursor}

    async def _handle(self, query: str) -> list[dict[str, Any]]:
        """The user named ``query``, if any (text that cannot be a username names nobody)."""
        if not _is_username(query):
            self._online_session()
            return []
        found = await self.lookup(query)
        return [found] if found["state"] != "unknown" else []

    # ------------------------------------------------------------ me

    def public_profile(self) -> dict[str, Any]:
        """This user's public (white pages) fields."""
        return dict(self.profile.config.get("public_profile") or {})

    async def set_profile(self, fields: dict[str, str | None]) -> dict[str, Any]:
        """Change public fields (an empty value clears one) and publish them."""
        session = self._online_session()
        try:
            return await _network(session.set_public_profile(fields))
        except ProfileError as exc:
            raise BadInput(str(exc)) from None

    async def set_presence(self, status: str, mood: str | None) -> dict[str, Any]:
        """Set online, away, dnd or invisible (and a mood text), and publish."""
        if status not in STATUS_BY_NAME:
            raise BadInput(f"unknown status {status!r}: use online, away, dnd or invisible")
        session = self._online_session()
        try:
            await _network(session.set_presence(PresenceStatus(STATUS_BY_NAME[status]), mood))
        except ProfileError as exc:
            raise BadInput(str(exc)) from None
        self.events.emit("presence", user=session.user, status=status, mood=session.mood)
        doc: dict[str, Any] = {"status": status, "mood": session.mood}
        if self.messaging is not None:  # shown to accepted contacts, pushed end to end
            pushed = await self.messenger.push_presence(status, session.mood or "")
            doc["pushed"] = pushed["sent"]
        return doc

    # ------------------------------------------------------------ calls

    def _call_service(self) -> CallService:
        self._online_session()
        if self.calls is None:
            raise NotOnline("calls are not ready yet (connecting)")
        return self.calls

    async def place_call(
        self, user: str, *, play: str | None, record: str | None, seconds: float | None
    ) -> dict[str, Any]:
        """Ring every device of ``user``; the call document at once (state calling)."""
        name = _canonical(user)
        if name == self.user:
            raise BadInput("you cannot call yourself")
        service = self._call_service()
        try:
            live = await _calling(service.place(name, play=play, record=record, seconds=seconds))
        except Refused:
            await self._callee_reachable(name)  # a clearer reason, when there is one
            raise
        return service.describe(live)

    async def _callee_reachable(self, name: str) -> None:
        """Raise why ``name`` cannot be called if the directory says so (unknown, offline)."""
        found = await self.lookup(name)
        if found["state"] == "unknown":
            raise NoSuchItem(f"cannot call {name}: there is no user {name}")
        if found["state"] != "online":
            raise UserOffline(f"cannot call {name}: {name} is not online")

    async def answer_call(
        self,
        call_id: str | None,
        *,
        play: str | None,
        record: str | None,
        seconds: float | None,
        wait_s: float = 0.0,
    ) -> dict[str, Any]:
        """Answer a ringing call (the oldest without ``call_id``; waiting up to ``wait_s``)."""
        service = self._call_service()
        ident = _call_id(call_id) if call_id is not None else None
        answering = service.answer(ident, play=play, record=record, seconds=seconds, wait_s=wait_s)
        return service.describe(await _calling(answering))

    async def hangup_call(self, call_id: str | None) -> dict[str, Any]:
        """Hang up (or reject, or stop ringing) a call; the latest live one without an id."""
        service = self._call_service()
        ident = _call_id(call_id) if call_id is not None else None
        return service.describe(await _calling(_now(service.hangup, ident)))

    async def hold_call(self, call_id: str, on: bool) -> dict[str, Any]:
        """Put a call on hold or resume it."""
        service = self._call_service()
        return service.describe(await _calling(_now(service.hold, _call_id(call_id), on)))

    def list_calls(self) -> list[dict[str, Any]]:
        """Live calls, and those that ended in the last minute."""
        service = self.calls
        if service is None:
            return []
        service.forget_ended()
        return [service.describe(live) for live in service.calls.values()]

    def get_call(self, call_id: str) -> dict[str, Any]:
        """One call's document."""
        service = self._call_service()
        try:
            return service.describe(service.get(_call_id(call_id)))
        except NoCall as exc:
            raise NoSuchCall(str(exc)) from None

    async def wait_call(self, call_id: str, timeout_s: float) -> dict[str, Any]:
        """Wait until the call ends (or ``timeout_s``); its document."""
        service = self._call_service()
        try:
            live = service.get(_call_id(call_id))
        except NoCall as exc:
            raise NoSuchCall(str(exc)) from None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.ended.wait(), timeout_s)
        return service.describe(live)

    # ------------------------------------------------------------ conferences

    def _conference_service(self) -> ConferenceService:
        self._online_session()
        if self.conferences is None:
            raise NotOnline("conferences are not ready yet (connecting)")
        return self.conferences

    def _conference(self, conf_id: str) -> tuple[ConferenceService, LiveConference]:
        ident = _conf_id(conf_id)
        service = self._conference_service()
        return service, _conferring(service.get, ident)

    async def start_conference(
        self,
        users: list[str],
        *,
        play: str | None,
        record: str | None,
        seconds: float | None,
    ) -> dict[str, Any]:
        """Start a conference hosted here with ``users``; its document at once."""
        service = self._conference_service()
        names = self._invitees(users)
        try:
            live = await service.start(names, play=play, record=record, seconds=seconds)
        except ConferenceError as exc:
            raise ConferenceRefused(str(exc)) from None
        except AudioError as exc:
            raise BadInput(str(exc)) from None
        return service.describe(live)

    def _invitees(self, users: list[str]) -> list[str]:
        """``users`` canonical, each once, without this user, within the roster bound."""
        names = [_canonical(user) for user in users]
        if not names:
            raise BadInput("a conference needs at least one user to invite")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise BadInput(f"{', '.join(twice)} named more than once")
        if self.user in names:
            raise BadInput("you cannot invite yourself: you are in your own conference")
        if len(names) >= MAX_MEMBERS:
            raise BadInput(f"a conference holds at most {MAX_MEMBERS} participants, you included")
        return names

    async def answer_conference(
        self,
        conf_id: str | None,
        *,
        play: str | None,
        record: str | None,
        seconds: float | None,
        wait_s: float = 0.0,
    ) -> dict[str, Any]:
        """Join a ringing conference (the oldest invite without ``conf_id``, waiting ``wait_s``)."""
        service = self._conference_service()
        if conf_id is not None:
            live = _conferring(service.get, _conf_id(conf_id))
        else:
            live = await _next_invite(service, wait_s)
        try:
            joined = await service.accept(live.conf_id, play=play, record=record, seconds=seconds)
        except ConferenceError as exc:
            raise ConferenceRefused(str(exc)) from None
        except AudioError as exc:
            if conf_id is None:  # still ringing: the next request may take it
                with contextlib.suppress(asyncio.QueueFull):
                    service.incoming.put_nowait(live)
            raise BadInput(str(exc)) from None
        return service.describe(joined)

    def decline_conference(self, conf_id: str) -> dict[str, Any]:
        """Do not join a ringing conference."""
        service, live = self._conference(conf_id)
        return service.describe(_conferring(service.decline, live.conf_id))

    def leave_conference(self, conf_id: str) -> dict[str, Any]:
        """Leave a conference (a host hands the mix on first)."""
        service, live = self._conference(conf_id)
        return service.describe(_conferring(service.leave, live.conf_id))

    def invite_to_conference(self, conf_id: str, user: str) -> dict[str, Any]:
        """Host: invite one more user."""
        service, live = self._conference(conf_id)
        name = _canonical(user)
        if name == self.user:
            raise BadInput("you cannot invite yourself")
        return service.describe(_conferring(service.invite, live.conf_id, name))

    def remove_from_conference(self, conf_id: str, user: str) -> dict[str, Any]:
        """Host: put a member out, or withdraw an invite."""
        service, live = self._conference(conf_id)
        name = _canonical(user)
        return service.describe(_conferring(service.remove, live.conf_id, name))

    def list_conferences(self) -> list[dict[str, Any]]:
        """Conferences running here, ringing ones, and those that ended lately."""
        service = self.conferences
        return [] if service is None else service.conferences()

    def get_conference(self, conf_id: str) -> dict[str, Any]:
        """One conference's document."""
        service, live = self._conference(conf_id)
        return service.describe(live)

    async def wait_conference(self, conf_id: str, timeout_s: float) -> dict[str, Any]:
        """Wait until this participant's conference ends (or ``timeout_s``); its document."""
        service, live = self._conference(conf_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.ended.wait(), timeout_s)
        return service.describe(live)


async def _next_invite(service: ConferenceService, wait_s: float) -> LiveConference:
    """The oldest conference invite still ringing, waiting up to ``wait_s`` for one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            if service.incoming.empty():
                left = max(0.0, deadline - loop.time())
                live = await asyncio.wait_for(service.incoming.get(), left)
            else:
                live = service.incoming.get_nowait()
        except TimeoutError:
            raise NoSuchItem("no conference invite is ringing") from None
        if live.core.state is ConfState.INVITED:
            return live


def _conferring(function: Any, *args: Any) -> Any:
    """Run a conference-service method, turning its failures into :class:`DaemonError`."""
    try:
        return function(*args)
    except NoSuchConference as exc:
        raise NoSuchItem(str(exc)) from None
    except ConferenceError as exc:
        raise ConferenceRefused(str(exc)) from None


def _hex_id(text: str, size: int, what: str) -> bytes:
    """``text`` as an id of ``size`` bytes written in hex, or :class:`BadInput`."""
    try:
        ident = bytes.fromhex(text)
    except ValueError:
        ident = b""
    if len(ident) != size:
        raise BadInput(f"not a {what} id: {text!r} ({2 * size} hex digits)")
    return ident


def _conf_id(text: str) -> bytes:
    return _hex_id(text, CONF_ID_SIZE, "conference")


async def _now(function: Any, *args: Any) -> Any:
    """Run a synchronous call-service method where :func:`_calling` can map its errors."""
    return function(*args)


async def _calling(awaitable: Awaitable[T]) -> T:
    """Await a call-service request, turning its failures into :class:`DaemonError`."""
    try:
        return await awaitable
    except NoCall as exc:
        raise NoSuchCall(str(exc)) from None
    except CallError as exc:
        raise Refused(str(exc)) from None
    except AudioError as exc:
        raise BadInput(str(exc)) from None


def _call_id(text: str) -> bytes:
    return _hex_id(text, CALL_ID_SIZE, "call")


def _canonical(username: str) -> str:
    try:
        return canonical_username(username)
    except InvalidUsername as exc:
        raise BadInput(str(exc)) from None


def _is_username(text: str) -> bool:
    try:
        canonical_username(text)
    except InvalidUsername:
        return False
    return True


def _profile_json(profile: Any) -> dict[str, Any]:
    fields = ("username", "full_name", "city", "country", "language")
    return {name: getattr(profile, name) for name in fields}


async def _network(awaitable: Awaitable[T]) -> T:
    """Await a network call, turning its failures into :class:`DaemonError`."""
    try:
        return await awaitable
    except RequestError as exc:
        if exc.code == ErrorCode.BAD_REQUEST:
            raise BadInput(exc.reason or "refused as malformed") from None
        reason = exc.reason or ErrorCode(exc.code).name.lower()
        raise Refused(reason, retry_after_ms=exc.retry_after_ms) from None
    except ConnectError as exc:
        raise Unreachable(f"cannot reach the server ({exc.reason})") from None
    except EndpointError as exc:
        raise Unreachable(str(exc)) from None
    except PermissionError as exc:
        raise NotLoggedIn(str(exc)) from None
    except ProfileError as exc:
        raise BadInput(str(exc)) from None
