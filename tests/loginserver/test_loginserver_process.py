"""The login server as a real process: CLI round trips, hostile input, throttling.

Runs against SQLite, and against PostgreSQL when the ``postgres_url``
fixture can provide one (it skips with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.client import account
from hopline.client.profile import Profile, parse_ls_key
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc, hopline_command
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import Endpoint, RequestError
from hopline.testing.wire_strategies import random_requests
from hopline.wire import Address, Message
from hopline.wire.commands import Login

PASSWORD = "correct horse battery staple"


@pytest.fixture
def login_server(database_url: str, tmp_path: Path) -> Iterator[Proc]:
    """A login-server process on a fresh database (SQLite, then PostgreSQL)."""
    data_dir = str(tmp_path / "ls")
    args = ["loginserver", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--db", database_url]
    with Cluster(tmp_path / "logs") as cluster:
        proc = cluster.start("loginserver", args)
        backend = database_url.partition(":")[0].partition("+")[0]
        assert proc.ready["database"] == backend
        yield proc


def profile_for(tmp_path: Path, name: str, server: Proc) -> Profile:
    profile = Profile.open(tmp_path / name)
    key = parse_ls_key(server.ready["public_key"])
    profile.pin_login_server(Address.parse(server.ready["listen"]), key)
    return profile


def pin_args(server: Proc) -> list[str]:
    return ["--login-server", server.ready["listen"], "--ls-key", server.ready["public_key"]]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hopline_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_cli_register_login_logout(login_server: Proc, tmp_path: Path) -> None:
    key_file = tmp_path / "pw"
    key_file.write_text(PASSWORD + "\n")
    common = ["--profile", str(tmp_path / "p"), "--password-file", str(key_file)]
    pin = [
        "--login-server",
        login_server.ready["listen"],
        "--ls-key",
        login_server.ready["public_key"],
    ]
    done = cli("register", "Alice", *common, *pin, "--full-name", "Alice Example", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["registered"] == "alice"

    done = cli("login", "alice", *common, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["user"] == "alice" and report["expires_at"] > 0
    assert (tmp_path / "p" / "certificate").stat().st_mode & 0o077 == 0

    done = cli("logout", "--profile", str(tmp_path / "p"), "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"logged_out": True, "revoked": True}


def test_cli_errors_are_one_line_with_the_contract_exit_codes(
    login_server: Proc, tmp_path: Path
) -> None:
    pin = [
        "--login-server",
        login_server.ready["listen"],
        "--ls-key",
        login_server.ready["public_key"],
    ]
    env = {"HOPLINE_PASSWORD": PASSWORD}
    bad_name = cli("register", "no spaces allowed", "--profile", str(tmp_path / "p"), *pin, env=env)
    assert bad_name.returncode == 2
    assert bad_name.stderr.count("\n") == 1 and "Traceback" not in bad_name.stderr

    unknown = cli("login", "nobody", "--profile", str(tmp_path / "p"), env=env)
    assert unknown.returncode == 1
    assert "wrong username or password" in unknown.stderr and unknown.stderr.count("\n") == 1

    wrong_key = cli(
        "login",
        "nobody",
        "--profile",
        str(tmp_path / "q"),
        "--login-server",
        login_server.ready["listen"],
        "--ls-key",
        "A" * 43 + "=",
        env=env,
    )
    assert wrong_key.returncode == 1 and "cannot reach" in wrong_key.stderr


async def test_an_impostor_login_server_is_refused(login_server: Proc, tmp_path: Path) -> None:
    profile = Profile.open(tmp_path / "p")
    profile.pin_login_server(Address.parse(login_server.ready["listen"]), os.urandom(32))
    with pytest.raises(Exception, match="wrong-issuer"):
        await account.register(profile, "eve", PASSWORD)


async def client_from(host: str, profile: Profile) -> Endpoint:
    endpoint = Endpoint(
        static=profile.keys.static, certificate=None, verifier=CertificateVerifier(profile.ls_key)
    )
    await endpoint.open_udp(host, 0)
    return endpoint


async def login_from(host: str, profile: Profile, user: str, password: str) -> Message:
    endpoint = await client_from(host, profile)
    try:
        pc = await endpoint.connect(
            profile.login_server.as_tuple(), Expectation(role=Role.LOGIN_SERVER)
        )
        request = Login(
            username=user,
            password=password,
            device_id=profile.device_id,
            static_key=profile.keys.static.public,
        )
        return await pc.request(request, timeout=30)
    finally:
        endpoint.close()


async def test_fifty_wrong_passwords_are_throttled_others_unaffected(
    login_server: Proc, tmp_path: Path
) -> None:
    profile = profile_for(tmp_path, "p", login_server)
    await account.register(profile, "alice", PASSWORD)
    await account.register(profile, "bob", PASSWORD)
    codes = []
    for _ in range(50):
        try:
            await login_from("127.0.0.2", profile, "alice", "not the password at all")
        except RequestError as exc:
            codes.append(exc.code)
    assert codes[:3] == [401, 401, 401]
    assert codes[-1] == 429 and codes.count(429) >= 40
    # the account itself is now locked, even with the right password from elsewhere ...
    with pytest.raises(RequestError) as caught:
        await login_from("127.0.0.3", profile, "alice", PASSWORD)
    assert caught.value.code == 429 and caught.value.retry_after_ms
    # ... but another account from another address is unaffected
    reply = await login_from("127.0.0.4", profile, "bob", PASSWORD)
    assert type(reply).__name__ == "LoginReply"


def random_datagram(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 1400))
    if kind == 1:  # looks like an init, random inside
        return b"\xe1" + rng.randbytes(rng.randint(6, 1300))
    if kind == 2:  # a well-sized init whose noise message is junk
        body = rng.randbytes(32)
        return b"\xe1" + rng.randbytes(4) + b"\x00\x20" + body + rng.randbytes(1200 - 39)
    return bytes([rng.choice((0xE2, 0xE3))]) + rng.randbytes(rng.randint(6, 300))


async def test_ten_thousand_random_requests_do_not_crash_it(
    login_server: Proc, tmp_path: Path
) -> None:
    address = Address.parse(login_server.ready["listen"]).as_tuple()
    rng = random.Random(2026)
    # 5,000 hostile datagrams at the socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for n in range(5000):
            raw.sendto(random_datagram(rng), address)
            if n % 500 == 0:
                await asyncio.sleep(0.01)
    # 5,000 requests generated from the whole command table, over a real session
    profile = profile_for(tmp_path, "p", login_server)
    endpoint = await client_from("127.0.0.5", profile)
    generated = random_requests(random.Random(7), 5000)
    answered = 0
    try:
        pc = await endpoint.connect(address, Expectation(role=Role.LOGIN_SERVER))
        for start in range(0, len(generated), 250):
            batch = generated[start : start + 250]
            results = await asyncio.gather(
                *(pc.request(m, timeout=60) for m in batch), return_exceptions=True
            )
            answered += sum(not isinstance(r, asyncio.TimeoutError) for r in results)
            assert not any(isinstance(r, (ConnectionError, TimeoutError)) for r in results)
    finally:
        endpoint.close()
    assert answered == len(generated)
    assert login_server.alive()
    # and it still does its job
    await account.register(profile, "carol", PASSWORD)
    result = await account.login(profile, "carol", PASSWORD)
    assert result.username == "carol"
