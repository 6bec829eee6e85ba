"""``python -m hopline.netlab up|down|status``: a lab for work by hand.

``up`` builds a lab that outlives the command (its owner file says
``manual``), with servers and one client per class unless ``--client
NAME=CLASS`` says otherwise, and prints its hosts; then run anything inside
with ``ip netns exec NAMESPACE ...``. ``down PREFIX`` (or ``down --all``)
removes labs; ``status`` lists them with their hosts, owners and whether
the owner is alive. ``cleanup`` removes the leftovers of dead labs (never
manual ones). docs/netlab.md walks through it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hopline.netlab.lab import Lab
from hopline.netlab.nat import NatClass
from hopline.netlab.system import (
    NetlabError,
    cleanup_stale,
    destroy,
    labs,
    owner_of,
    read_state,
)

DEFAULT_CLIENTS = {
    "public": NatClass.PUBLIC,
    "masq": NatClass.MASQUERADE,
    "cone": NatClass.FULL_CONE,
    "sym": NatClass.SYMMETRIC,
    "double": NatClass.DOUBLE_NAT,
    "blocked": NatClass.UDP_BLOCKED,
    "six": NatClass.IPV6,
}


def up(servers: int, clients: dict[str, NatClass]) -> dict[str, Any]:
    """Build a manual lab; its description."""
    lab = Lab()
    try:
        for k in range(servers):
            lab.add_server(f"server{k}")
        for name, nat in clients.items():
            lab.add_client(name, nat)
    except BaseException:
        lab.close()
        raise
    lab.detach()
    return {"prefix": lab.prefix, "hosts": {n: h.to_json() for n, h in lab.hosts.items()}}


def status() -> list[dict[str, Any]]:
    """Every lab on this machine."""
    found = []
    for prefix, spaces in sorted(labs().items()):
        owner, state = owner_of(prefix), read_state(prefix) or {}
        found.append(
            {
                "prefix": prefix,
                "owner_pid": None if owner is None else owner.pid,
                "manual": owner is not None and owner.manual,
                "alive": owner is not None and owner.alive(),
                "namespaces": sorted(spaces),
                "hosts": state.get("hosts", {}),
            }
        )
    return found


def down(prefixes: list[str], everything: bool) -> list[str]:
    """Remove the given labs (``everything``: every manual or dead one)."""
    if everything:
        prefixes = [lab["prefix"] for lab in status() if lab["manual"] or not lab["alive"]]
    removed = []
    for prefix in prefixes:
        destroy(prefix)
        removed.append(prefix)
    return removed


def _client(text: str) -> tuple[str, NatClass]:
    name, _, nat = text.partition("=")
    try:
        return name, NatClass(nat)
    except ValueError:
        classes = ", ".join(c.value for c in NatClass)
        raise argparse.ArgumentTypeError(f"NAME=CLASS, CLASS one of {classes}") from None


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hopline.netlab")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="build a lab that stays until 'down'")
    start.add_argument("--servers", type=int, default=3)
    start.add_argument("--client", type=_client, action="append", metavar="NAME=CLASS")
    stop = commands.add_parser("down", help="remove labs")
    stop.add_argument("prefixes", nargs="*")
    stop.add_argument("--all", action="store_true", help="every manual lab and every dead one")
    commands.add_parser("status", help="list labs")
    commands.add_parser("cleanup", help="remove the leftovers of dead labs")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            result: Any = up(args.servers, dict(args.client or DEFAULT_CLIENTS.items()))
        elif args.command == "down":
            result = {"removed": down(args.prefixes, args.all)}
        elif args.command == "status":
            result = status()
        else:
            result = {"removed": cleanup_stale()}
    except (NetlabError, ValueError) as exc:
        print(f"netlab: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
