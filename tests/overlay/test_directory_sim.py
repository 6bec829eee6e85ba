"""The directory simulation at test size: 200 supernodes, 10,000 users, 1-2% crashed."""

from __future__ import annotations

import pytest

from hopline.identity.certificate import CertificateBody, CertificateError, Role
from hopline.testing.directory_sim import SimConfig, SimReport, SimulationVerifier, run_simulation


@pytest.fixture(scope="module")
def report() -> SimReport:
    return run_simulation(SimConfig(supernodes=200, users=10_000, crashed=4, seed=7))


def test_every_lookup_is_answered_in_one_hop(report: SimReport) -> None:
    summary = report.summary()
    assert report.placed == 3 * 10_000
    assert summary["lookups"] == 10_000
    assert summary["answered_pct"] == 100.0
    assert summary["hops_per_remote_lookup"] == 1.0
    assert summary["hops_per_lookup"] <= 1.0


def test_messages_are_request_reply_plus_retries(report: SimReport) -> None:
    remote = report.lookups - report.local
    assert report.messages == 2 * remote + report.retries
    # 4 of 200 nodes crashed: about 2% of first choices time out.
    assert 0 < report.retries < 0.05 * report.lookups
    assert 2.0 <= report.messages / remote < 2.1
    assert report.summary()["messages_per_lookup"] < 2.1


def test_latency_and_load(report: SimReport) -> None:
    summary = report.summary()
    assert 1.0 <= summary["p50_ms"] < 150.0
    assert summary["p99_ms"] >= 500.0 or report.retries < 0.01 * report.lookups
    low, high, mean = report.records_per_node
    assert mean == pytest.approx(150.0)
    assert 0 < low <= mean <= high < 4 * mean


def test_small_signed_run_uses_real_certificates() -> None:
    signed = run_simulation(SimConfig(supernodes=20, users=200, crashed=1, signed=True, seed=3))
    assert signed.summary()["answered_pct"] == 100.0


def test_simulation_verifier_applies_field_checks() -> None:
    stub = SimulationVerifier()
    body = CertificateBody(
        version=1,
        role=Role.USER,
        subject="bob",
        device_id=b"d" * 16,
        static_key=b"k" * 32,
        issued_at=0,
        expires_at=100,
        serial=1,
        issuer=bytes(32),
    )
    data = stub.add(body)
    assert stub.verify(data, 50, role=Role.USER, subject="bob", static_key=b"k" * 32).body == body
    with pytest.raises(CertificateError, match="wrong-name"):
        stub.verify(data, 50, subject="eve")
    with pytest.raises(CertificateError, match="wrong-role"):
        stub.verify(data, 50, role=Role.SUPERNODE)
    with pytest.raises(CertificateError, match="wrong-key"):
        stub.verify(data, 50, static_key=b"x" * 32)
    with pytest.raises(CertificateError, match="expired"):
        stub.verify(data, 100)
    with pytest.raises(CertificateError, match="malformed"):
        stub.verify(b"other", 50)
