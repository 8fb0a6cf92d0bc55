"""`nnode claim-code`, `invite`, `admin-link` and `residents`: the people who use the node, through the running
node."""

from __future__ import annotations

import argparse
import time
from typing import Any

from node.commands.client import control
from node.config import Config
from node.errors import NodeError
from node.people.claim import terminal_qr


async def cmd_claim_code(config: Config, args: argparse.Namespace) -> int:
    """Print the running node's current claim code, for an operator with SSH; refuse once the node is claimed."""
    answer = await control(config, "GET", "/control/claim-code")
    if answer["claimed"]:
        raise NodeError(f"{answer['host']} is already claimed: there is no claim code; its manager signs in at "
                        "/login (`nnode admin-link` prints a one-time sign-in link)")
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(answer["expires"]))
    print(f"{answer['host']} ({answer['host']}.local) is not claimed yet.\nClaim code: {answer['code']}\n"
          f"Valid until: {until}, once. Open {answer['setup']} and type it.")
    return 0


async def cmd_invite(config: Config, args: argparse.Namespace) -> int:
    """Print a one-time invite for a resident: code, link and a terminal QR."""
    made = await control(config, "POST", "/control/invite", {"unit": args.unit, "name": args.name or ""})
    expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(made["expires"]))
    print(f"Invite for unit {made['unit']}{' (' + made['name'] + ')' if made['name'] else ''}, single use, "
          f"valid until {expires}\n  code: {made['code']}\n  link: {made['link']}\n"
          f"Scan on the building's Wi-Fi:\n{terminal_qr(made['link'])}")
    if made.get("ca_fingerprint"):
        print("The invite page offers the building's certificate for the secure (https) address; its SHA-256 "
              f"fingerprint, for the resident to check:\n  {made['ca_fingerprint']}")
    return 0


async def cmd_admin_link(config: Config, args: argparse.Namespace) -> int:
    """Print a one-time manager sign-in link (valid 15 minutes)."""
    made = await control(config, "POST", "/control/admin-link")
    print(f"One-time manager sign-in link (valid 15 minutes):\n  {made['link']}\n{terminal_qr(made['link'])}")
    return 0


async def cmd_residents(config: Config, args: argparse.Namespace) -> int:
    """List residents, or revoke one (their sessions end at once)."""
    if args.action == "revoke":
        await control(config, "POST", "/control/residents/revoke", {"id": args.id})
        print(f"resident {args.id} revoked; their sessions have ended")
        return 0
    for r in await control(config, "GET", "/control/residents"):
        state = "revoked" if r["revoked"] else ("on call" if r["on_call"] else "")
        print(f"{r['id']:>4}  {r['unit']:8} {r['name'] or '-':24} sessions={r['sessions']}  {state}")
    return 0


def add_commands(sub: Any) -> None:
    """Register claim-code, invite, admin-link and residents on the `nnode` subparsers."""
    sub.add_parser("claim-code", help="print the current claim code of the running, unclaimed node"
                   ).set_defaults(func=cmd_claim_code)
    invite = sub.add_parser("invite", help="print a one-time invite (code, link, QR) for a resident")
    invite.add_argument("--unit", required=True, help="the resident's apartment or unit, like 4B")
    invite.add_argument("--name", help="the resident's name, shown to the manager and responders")
    invite.set_defaults(func=cmd_invite)
    sub.add_parser("admin-link", help="print a one-time manager sign-in link").set_defaults(func=cmd_admin_link)
    residents = sub.add_parser("residents", help="list residents or revoke one")
    residents_sub = residents.add_subparsers(dest="action", required=True)
    residents_sub.add_parser("list")
    revoke = residents_sub.add_parser("revoke")
    revoke.add_argument("id", type=int)
    residents.set_defaults(func=cmd_residents)
