"""The nftables rulesets of each client class (pure text; no root needed)."""

from __future__ import annotations

import pytest

from hopline.netlab.nat import NatClass, cgn_ruleset, router_ruleset

WAN, CLIENT = "hnl000000w0", "192.168.1.2"


def rules(nat: NatClass) -> str:
    return router_ruleset("hnl000000nat", nat, WAN, CLIENT)


def test_masquerade_keeps_ports_and_symmetric_randomises_them() -> None:
    assert f'oifname "{WAN}" masquerade\n' in rules(NatClass.MASQUERADE)
    assert "random" not in rules(NatClass.MASQUERADE)
    assert "masquerade random,fully-random" in rules(NatClass.SYMMETRIC)
    assert "masquerade random,fully-random" in rules(NatClass.IPV6)  # its IPv4 side


def test_full_cone_forwards_every_udp_port_to_the_client() -> None:
    text = rules(NatClass.FULL_CONE)
    assert f'iifname "{WAN}" udp dport 1-65535 dnat to {CLIENT}' in text
    assert "hook prerouting priority dstnat" in text
    assert "dnat" not in rules(NatClass.MASQUERADE)


def test_udp_blocked_drops_forwarded_udp_only() -> None:
    text = rules(NatClass.UDP_BLOCKED)
    assert "hook forward priority filter" in text
    assert "meta l4proto udp counter drop" in text
    assert "tcp" not in text
    assert "counter drop" not in rules(NatClass.MASQUERADE)
    assert "hook forward" not in rules(NatClass.MASQUERADE)


def test_every_table_carries_the_lab_prefix_and_public_has_no_router() -> None:
    for nat in NatClass:
        if nat is NatClass.PUBLIC:
            with pytest.raises(ValueError):
                rules(nat)
            assert not nat.routed
        else:
            assert rules(nat).startswith("table ip hnl000000nat {")
    assert cgn_ruleset("hnl000000nat", WAN).startswith("table ip hnl000000nat {")
    assert f'oifname "{WAN}" masquerade' in cgn_ruleset("hnl000000nat", WAN)


def test_routers_drop_new_udp_to_themselves_from_the_wan() -> None:
    rule = f'iifname "{WAN}" ct state new meta l4proto udp drop'
    for nat in NatClass:
        if nat.routed and nat is not NatClass.DOUBLE_NAT:
            assert rule in rules(nat), nat
    assert rule in cgn_ruleset("hnl000000nat", WAN)
