"""`nnode agency`, `audit` and the agencies' offline tools (`verify`, `agency-key`, `agency-credential`); the agency
client's commands are in node/sharing/agency_cli.py."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from node.commands.client import control
from node.config import Config
from node.errors import NodeError, NotInitialised
from node.identity import load_key, node_id
from node.sharing import VerifyError, agency_cli, load_agency_key, verify_bundle, write_agency_key
from node.sharing.agencies import sign_credential
from node.sharing.bundle import SUFFIX
from node.sharing.crosscheck import cross_check

VERIFY_FAILED = 3
"""Exit status of `nnode verify` when the bundle fails a check (2: it could not be checked at all)."""


async def cmd_agency(config: Config, args: argparse.Namespace) -> int:
    """Register, list or revoke agencies (through the running node, which logs each change)."""
    if args.action == "add":
        agency = await control(config, "POST", "/control/agencies", {
            "key": args.key, "name": args.name, "jurisdiction": args.jurisdiction or "", "contact": args.contact or ""})
        print(f"agency {agency['name']!r} registered ({agency['key']})")
        # The agency's client pins the node's key; the manager hands it over with the registration (docs/agencies.md).
        print(f"give the agency this node's key with its address: --node-key {node_id(load_key(config.key_path))}")
        return 0
    if args.action == "revoke":
        agency = await control(config, "POST", "/control/agencies/revoke", {"key": args.key,
                                                                            "reason": args.reason or ""})
        print(f"agency {agency['name']!r} revoked; its open requests are refused and undownloaded bundles deleted")
        return 0
    agencies = await control(config, "GET", "/control/agencies")
    for a in agencies:
        state = "revoked" if a["revoked"] else ("credential until " + time.strftime("%Y-%m-%d", time.gmtime(
            a["expires"])) if a["expires"] else "active")
        print(f"{a['key']}  {a['name']:32} {a['jurisdiction'] or '-':20} {a['source']:8} {state}")
    if not agencies:
        print("no agencies registered")
    return 0


async def cmd_audit(config: Config, args: argparse.Namespace) -> int:
    """Check the audit log (read-only): chain, signatures, the heads of it this node holds, and, unless --local,
    the copies of its heads that each approved peer holds (asked with a signed request)."""
    if not config.db_path.exists():
        raise NotInitialised(f"{config.db_path}: no database; run `nnode init` first")
    key = load_key(config.key_path)
    node_key = node_id(key)
    heads = await _published_heads(config, node_key)
    peers = [] if args.local else await _approved_peers(config, node_key)
    report = await cross_check(config.db_path, key, peers, heads)
    for label, error in report["unreachable"].items():
        print(f"nnode audit verify: {label} did not answer: {error}", file=sys.stderr)
    copies = (f"{report['agree']} of {report['holding']} peers' copies agree ({report['answered']} of "
              f"{report['peers']} peers answered, {report['heads']} heads)") if peers else \
        ("no peer asked (--local)" if args.local else "no approved peer to ask")
    if not report["ok"]:
        print(f"nnode audit verify: FAILED: {report['problem']}", file=sys.stderr)
        print(f"nnode audit verify: {copies}", file=sys.stderr)
        return 3
    head = report["head"]
    print(f"audit log verified: {report['entries']} entries, chain and signatures intact; "
          f"{report['heads_checked']} heads published to peers match; {copies}"
          + (f"; head {head['seq']} {head['hash'][:16]}…" if head else ""))
    if peers and not report["holding"]:
        print("nnode audit verify: no peer holds a head of this log: only this node's own copies were checked",
              file=sys.stderr)
    return 0


async def _approved_peers(config: Config, node_key: str) -> list[tuple[str, str, str]]:
    """(key, name, url) of the approved peers with an address, from the database (read-only)."""
    def read() -> list[tuple[str, str, str]]:
        with contextlib.closing(sqlite3.connect(config.db_path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT key, name, url FROM peers WHERE state = 'approved' AND url IS NOT NULL "
                                "AND key != ? ORDER BY name, key", (node_key,)).fetchall()
        return [(str(k), str(n), str(u)) for k, n, u in rows]
    return await asyncio.to_thread(read)


async def _published_heads(config: Config, node_key: str) -> list[dict[str, Any]]:
    """This node's audit heads in its event store (its own, and those anti-entropy brought back from peers)."""
    def read() -> list[dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(config.db_path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT body FROM events WHERE kind = 'audit-head' AND author = ? AND body IS NOT "
                                "NULL", (node_key,)).fetchall()
        return [json.loads(r[0]) for r in rows]
    return await asyncio.to_thread(read)


# -- offline tools for agencies: no config, data folder or running node ------------------------------------------

def cmd_verify(args: argparse.Namespace) -> int:
    """Check an agency bundle offline; print the report, or one line naming the first failure."""
    bundle = Path(args.bundle)
    out = Path(args.out) if args.out else bundle.with_name(bundle.name.removesuffix(SUFFIX) + ".verified")
    try:
        if not args.force and out.is_dir() and any(out.iterdir()):
            # Verified before: a fresh subfolder, so nothing an earlier run wrote (or anything else) is touched.
            out = fresh_subfolder(out)
            print(f"nnode verify: {out.parent} is not empty: writing into {out} (--force replaces the files an "
                  f"earlier run wrote in {out.parent})", file=sys.stderr)
        result = verify_bundle(bundle, load_agency_key(args.key), out, expected_node_key=args.node_key,
                               replace=args.force)
    except VerifyError as exc:
        print(f"nnode verify: FAILED: {exc}", file=sys.stderr)
        return VERIFY_FAILED
    except NodeError as exc:
        print(f"nnode verify: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"nnode verify: {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    sys.stdout.write(result.report)
    return 0


def fresh_subfolder(folder: Path, now: float | None = None) -> Path:
    """A subfolder of `folder` that does not exist yet, named for the UTC time: run-2026-12-03T14-05-09Z."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime(time.time() if now is None else now))
    candidate, n = folder / f"run-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = folder / f"run-{stamp}-{n}"
    return candidate


def cmd_agency_key(args: argparse.Namespace) -> int:
    """Make an agency key file, or print the public key of one."""
    try:
        key = write_agency_key(args.file) if args.action == "new" else load_agency_key(args.file)
    except NodeError as exc:
        print(f"nnode agency-key: {exc}", file=sys.stderr)
        return 2
    if args.action == "new":
        print(f"agency key written to {args.file} (private: keep it safe, mode 0600): a signing key and a separate "
              "encryption key")
        print("public key (give this to the node's manager):")
    print(key.public)
    if args.action == "public":
        print(f"encryption key (named in each request; bundles are sealed to it): {key.encryption_key}"
              if not key.legacy else "encryption key: none (an old single-key file: it opens old bundles but "
              "posts no request; make a new one with nnode agency-key new)", file=sys.stderr)
    return 0


def cmd_agency_credential(args: argparse.Namespace) -> int:
    """For a trust anchor: sign an agency's credential with the anchor key and print it as JSON."""
    try:
        credential = sign_credential(load_agency_key(args.anchor_key).signing, agency=args.agency, name=args.name,
                                     jurisdiction=args.jurisdiction or "", contact=args.contact or "",
                                     days=args.days)
    except NodeError as exc:
        print(f"nnode agency credential: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(credential, indent=2))
    return 0


# -- the parsers, in the order `nnode --help` lists them --------------------------------------------------------

def _add_verify(sub: Any) -> None:
    verify = sub.add_parser("verify", help="check an agency bundle offline and extract its clip (agencies; needs "
                            "no node)", description="Check an agency bundle offline and extract its clip, signed "
                            "manifest and a report. Exit status 0 when every check passes, 3 when one fails, 2 when "
                            "the bundle could not be checked.")
    verify.add_argument("bundle", metavar="BUNDLE")
    verify.add_argument("--key", required=True, metavar="AGENCY_KEY_FILE",
                        help="the agency key file (nnode agency-key new; an old single-seed file opens old bundles)")
    verify.add_argument("--out", metavar="DIR", help="folder for the results (default: BUNDLE without .nnbundle, "
                        "plus .verified); if it is not empty, a new subfolder run-<UTC time> in it")
    verify.add_argument("--force", action="store_true", help="write into DIR even if it is not empty, replacing "
                        "only the files verify writes (the clip, manifest.json, manifest.sig, report.txt)")
    verify.add_argument("--node-key", metavar="HEX", help="refuse unless the node that signed it has this key")
    verify.set_defaults(func=cmd_verify, offline=True)


def _add_agency_key(sub: Any) -> None:
    agency_key = sub.add_parser("agency-key", help="make an agency key file, or show its public key (agencies)")
    agency_sub = agency_key.add_subparsers(dest="action", required=True)
    agency_sub.add_parser("new", help="write a new key to FILE (mode 0600) and print its public key"
                          ).add_argument("file", metavar="FILE")
    agency_sub.add_parser("public", help="print the public key of the key in FILE").add_argument("file", metavar="FILE")
    agency_key.set_defaults(func=cmd_agency_key, offline=True)


def _add_agency(sub: Any) -> None:
    agency = sub.add_parser("agency", help="register, list or revoke the agencies that may ask for footage")
    agency_actions = agency.add_subparsers(dest="action", required=True)
    agency_actions.add_parser("list")
    agency_add = agency_actions.add_parser("add", help="register an agency by its public key")
    agency_add.add_argument("key", metavar="KEY", help="the agency's ed25519 public key (64 hex digits)")
    agency_add.add_argument("--name", required=True)
    agency_add.add_argument("--jurisdiction")
    agency_add.add_argument("--contact")
    agency_revoke = agency_actions.add_parser("revoke", help="revoke an agency for good")
    agency_revoke.add_argument("key", metavar="KEY")
    agency_revoke.add_argument("--reason")
    agency.set_defaults(func=cmd_agency)


def _add_agency_credential(sub: Any) -> None:
    credential = sub.add_parser("agency-credential", help="sign an agency credential with a trust anchor's key "
                                "(accreditation bodies; needs no node)")
    credential.add_argument("--anchor-key", required=True, metavar="FILE", help="the anchor's key file "
                            "(`nnode agency-key new FILE`)")
    credential.add_argument("--agency", required=True, metavar="KEY", help="the agency's public key")
    credential.add_argument("--name", required=True)
    credential.add_argument("--jurisdiction")
    credential.add_argument("--contact")
    credential.add_argument("--days", type=int, default=365, help="validity (default 365)")
    credential.set_defaults(func=cmd_agency_credential, offline=True)


def add_commands(sub: Any) -> None:
    """Register verify, agency-key, agency, agency-credential, audit and agency-client on the `nnode` subparsers."""
    _add_verify(sub)
    _add_agency_key(sub)
    _add_agency(sub)
    _add_agency_credential(sub)
    audit = sub.add_parser("audit", help="check the audit log of disclosures")
    audit.add_argument("action", choices=["verify"])
    audit.add_argument("--local", action="store_true",
                       help="check against this node's own copies of its heads only, asking no peer")
    audit.set_defaults(func=cmd_audit)
    agency_cli.add_parser(sub)
