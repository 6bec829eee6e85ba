"""The command-line contract: JSON on stdout, one-line errors, exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess

import pytest

from hopline.demo.cluster import hopline_command


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hopline_command(*args), input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> None:
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("hopline: ")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_wire_decode_json_is_one_document() -> None:
    done = run("wire", "decode", "--json", "10 01 07 08 05")
    assert done.returncode == 0
    doc = json.loads(done.stdout)
    assert doc["command"] == "ping" and doc["fields"] == {"nonce": 5}
    assert doc["objects"][0]["offset"] == 3


def test_wire_decode_reads_stdin_and_shows_a_table() -> None:
    done = run("wire", "decode", "-", stdin="1001070805\n")
    assert done.returncode == 0 and "nonce" in done.stdout


def test_wire_decode_shows_an_invalid_message_then_fails() -> None:
    done = run("wire", "decode", "--json", "1001074a0178")  # a ping without its nonce
    assert done.returncode == 2
    assert json.loads(done.stdout)["objects"][0]["type"] == "string"
    assert done.stderr.startswith("hopline: not a valid ping: missing")
    assert done.stderr.count("\n") == 1


def test_wire_encode_round_trips_the_decoder_output() -> None:
    decoded = run("wire", "decode", "--json", "1002010907686f706c696e65").stdout
    done = run("wire", "encode", "-", stdin=decoded)
    assert done.returncode == 0 and done.stdout.strip() == "1002010907686f706c696e65"


@pytest.mark.parametrize(
    "args",
    [
        ("wire", "decode", "zz"),  # not hex
        ("wire", "decode", "1001"),  # truncated header
        ("wire", "decode", "20010708"),  # unknown version
        ("wire", "encode", "{not json"),
        ("wire", "encode", '{"command": "ping", "fields": {"nonce": -1}}'),
        ("wire", "encode", '{"command": "nope"}'),
        ("wire", "frobnicate"),
        ("--no-such-option",),
        ("loginserver",),  # needs --listen
        ("loginserver", "--listen", "not-an-address"),
        ("register",),  # needs a user
        ("demo", "--seconds", "-1"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    assert_one_line_error(run(*args), 2)


def test_login_without_a_known_login_server_says_what_to_give(tmp_path: object) -> None:
    done = subprocess.run(
        hopline_command("login", "alice", "--profile", f"{tmp_path}/p"),
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOPLINE_PASSWORD": "whatever", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert_one_line_error(done, 2)
    assert "--login-server" in done.stderr


def test_debug_shows_the_traceback_of_an_unexpected_error(tmp_path: object) -> None:
    bad_profile = f"{tmp_path}/file"
    with open(bad_profile, "w") as handle:
        handle.write("not a directory")
    done = run("--debug", "logout", "--profile", bad_profile)
    assert done.returncode != 0
    quiet = run("logout", "--profile", bad_profile)
    assert quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr
