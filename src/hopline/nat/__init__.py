"""NAT traversal helpers: STUN messages, the supernodes' Binding service, NAT discovery.

* :mod:`hopline.nat.stun` — the STUN codec (RFC 8489, RFC 5780 attributes), sans-I/O.
* :mod:`hopline.nat.service` — the Binding service a supernode runs on its UDP
  port: answers, rate limits and drop counters (sans-I/O), and its asyncio shell
  (alternate port, change-IP answers through a partner supernode).
* :mod:`hopline.nat.discovery` — NAT behaviour discovery with two supernodes
  (sans-I/O) and the :class:`~hopline.nat.discovery.NatReport` it produces.
* :mod:`hopline.nat.netcheck` — its asyncio shell, behind ``hopline netcheck``.
"""
