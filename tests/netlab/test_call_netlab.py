"""Voice calls between daemons behind real kernel NATs, end to end.

One lab: a login server and two supernodes on the public segment, and four
client hosts (two masquerade, one full cone, one symmetric). Each user runs
the real daemon (``hopline up``) on its host and the call is placed and
answered with the real command line, from and to WAV files, exactly as a
user would: ``hopline answer --auto --record`` on one side, ``hopline call
--play --seconds 10`` on the other.

* masquerade to full cone gets a direct path, masquerade to symmetric a
  relayed one (the NATs allow nothing else), and a ``--relay-only`` daemon
  a relayed one by choice;
* what the callee recorded is compared with the speech the caller sent by
  wideband PESQ (ITU-T P.862.2) after alignment;
* while the relayed calls run, every UDP datagram the supernodes' hosts
  send or receive is captured (:mod:`hopline.netlab.capture`): the relayed
  ones (not the supernodes' own signalling port) must be there, and they
  must not be readable as media packets, receiver reports or wire messages
  (beyond the odd random ciphertext that happens to parse) — what a relay
  forwards is the callers' end-to-end ciphertext.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hopline.media.audio import load_voice, write_wav
from hopline.media.score import pesq_wb
from hopline.netlab import Lab, LabProcess
from hopline.netlab.matrix import expected_path
from hopline.netlab.nat import NatClass
from hopline.netlab.network import LabNetwork
from hopline.netlab.relayed import capture_relays, plaintext_seen, relayed_payloads
from hopline.testing.speech import make_speech

SECONDS = 10
MIN_PESQ = 3.5
USERS = {  # user: (host, NAT class, extra daemon options)
    "alice": ("masq1", NatClass.MASQUERADE, ()),
    "bob": ("cone1", NatClass.FULL_CONE, ()),
    "carol": ("sym1", NatClass.SYMMETRIC, ()),
    "dave": ("masq2", NatClass.MASQUERADE, ("--relay-only",)),
}


@pytest.fixture(scope="module")
def network(netlab: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNetwork]:
    """Two supernodes and four users, each with a running daemon."""
    workdir = tmp_path_factory.mktemp("calls")
    with Lab(workdir / "lab") as lab:
        net = LabNetwork(lab, workdir)
        net.start(supernodes=2)
        for user, (host, nat, options) in USERS.items():
            net.user(host, nat, user)
            net.daemon(host, user, *options)
            wait_online(net, user)
        yield net


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    write_wav(path, make_speech(seconds=SECONDS))
    return path


def wait_online(net: LabNetwork, user: str) -> None:
    host = USERS[user][0]
    for _ in range(100):
        status = json.loads(net.cli(host, user, "status", "--json"))
        if status["state"] == "online" and status["nat"] != "unknown":
            return
        net.lab.exec(host, ["sleep", "0.2"])
    raise AssertionError(f"{user} did not come online: {status}")


def call(net: LabNetwork, caller: str, callee: str, speech: Path) -> dict[str, Any]:
    """``callee`` answers automatically and records; ``caller`` plays speech for 10 s."""
    heard = net.workdir / f"{callee}-heard-{caller}.wav"
    answering: LabProcess = net.start_cli(
        USERS[callee][0], callee, "answer", "--auto", "--record", str(heard), "--json"
    )
    placed = net.cli(
        USERS[caller][0],
        caller,
        *("call", callee, "--play", str(speech), "--seconds", str(SECONDS), "--json"),
        timeout=90,
    )
    answered = answering.read_json(60)
    score = pesq_wb(load_voice(speech), load_voice(heard))
    return {"caller": json.loads(placed), "callee": answered, "pesq": score}


def check_call(result: dict[str, Any], path: str) -> None:
    for side in ("caller", "callee"):
        report = result[side]
        assert report["state"] == "ended" and report["end_reason"] == "hangup", report
        assert report["path"] == path, report
        assert report["packets_received"] > 0.9 * SECONDS * 50, report
        assert report["codec"] == "opus/48000/1"
    print(f"\n{result['caller']['peer']}: path {path}, PESQ {result['pesq']:.2f}")
    assert result["pesq"] >= MIN_PESQ, result


def test_masquerade_to_full_cone_talks_directly(network: LabNetwork, speech: Path) -> None:
    expected = expected_path(NatClass.MASQUERADE, NatClass.FULL_CONE)
    assert expected == "direct"
    check_call(call(network, "alice", "bob", speech), expected)


@pytest.mark.parametrize(
    ("caller", "callee"), [("alice", "carol"), ("dave", "bob")], ids=["nat-relay", "relay-only"]
)
def test_relayed_calls_sound_good_and_relays_see_only_ciphertext(
    network: LabNetwork, speech: Path, caller: str, callee: str
) -> None:
    captures = capture_relays(network, f"{caller}-{callee}")
    result = call(network, caller, callee, speech)
    relayed = relayed_payloads(captures)
    check_call(result, "relay")
    assert len(relayed) > SECONDS * 50, f"only {len(relayed)} relayed datagrams captured"
    assert not plaintext_seen(relayed), (len(relayed), plaintext_seen(relayed))
