"""`nnode agency-client`: an agency asks a node for footage, follows its requests and fetches and verifies bundles.

Runs on the agency's machine: it reads no config file or data folder, only the agency key file (and a credential).
Exit status: 0 done; 1 the node refused the call (its reason is printed); 2 a usage, file or network error;
3 (fetch) a bundle failed verification.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from node.errors import NodeError
from node.sharing.agency_keys import load_agency_key
from node.sharing.bundle import SUFFIX
from node.sharing.client import AgencyClient, AgencyClientError, build_fields
from node.sharing.errors import VerifyError
from node.sharing.pins import FILE_NAME, KnownNodes, NodeKeyChanged
from node.sharing.verify import verify_bundle

PROG = "nnode agency-client"
REFUSED, USAGE, FAILED = 1, 2, 3


class Usage(Exception):
    """A bad argument or unreadable local file (exit status 2)."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the `agency-client` subcommand group on an argparse subparsers object."""
    group: argparse.ArgumentParser = sub.add_parser(
        "agency-client", help="ask a node for footage, follow requests, fetch bundles (agencies)",
        description="The agency side of sharing: every call is signed with the agency key. Exit status 0 done, "
        "1 the node refused, 2 usage or network error, 3 a bundle failed verification.")
    actions = group.add_subparsers(dest="agency_command", required=True, metavar="{request,status,fetch,portal}")

    request = actions.add_parser("request", help="post a signed footage request")
    _common(request)
    request.add_argument("--case", required=True, metavar="N", help="the case number")
    request.add_argument("--reason", required=True, metavar="TEXT", help="why the footage is needed")
    request.add_argument("--start", required=True, metavar="ISO", help="window start, like 2026-11-20T21:00:00Z "
                         "(no offset: local time)")
    request.add_argument("--end", required=True, metavar="ISO", help="window end")
    area = request.add_mutually_exclusive_group(required=True)
    area.add_argument("--circle", metavar="LAT,LON,RADIUS_M", help="centre in degrees and radius in whole metres")
    area.add_argument("--polygon", metavar='"LAT LON;LAT LON;..."', help="3 to 64 corners in degrees")
    request.add_argument("--emergency", action="store_true", help="urgency emergency (alerts the manager at once)")
    request.add_argument("--contact", required=True, metavar="TEXT", help="who the owners may contact")
    request.add_argument("--expires-days", type=int, default=30, metavar="DAYS", help="open for (default 30 days)")
    request.set_defaults(func=cmd_request)

    status = actions.add_parser("status", help="list this agency's requests and what each node has ready")
    _common(status)
    status.add_argument("request_id", nargs="?", metavar="REQUEST_ID", help="only this request")
    status.set_defaults(func=cmd_status)

    fetch = actions.add_parser("fetch", help="download this agency's bundles from the node and verify each")
    _common(fetch)
    fetch.add_argument("--out", required=True, metavar="DIR", help="folder for the bundles and their contents")
    fetch.add_argument("--request", metavar="ID", help="only the bundles of this request")
    _pinning(fetch)
    fetch.set_defaults(func=cmd_fetch)

    portal = actions.add_parser("portal", help="serve the agency portal on this computer (127.0.0.1 only)",
                                description="Serve the agency portal page on 127.0.0.1: it signs every call to the "
                                "node here, with the key file, and verifies bundles into --out; the key never goes "
                                "into the page. Runs until Ctrl-C.")
    _common(portal)
    portal.add_argument("--port", type=int, default=8471, metavar="N", help="the local port (default 8471; 0: any "
                        "free port)")
    portal.add_argument("--out", metavar="DIR", help="folder for fetched and verified bundles (default: bundles/ "
                        "next to the key file)")
    _pinning(portal)
    portal.set_defaults(func=cmd_portal)
    group.set_defaults(offline=True)
    return group


def _pinning(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-key", metavar="HEX", help="the node's key as its manager gave it at registration "
                        "(else the key pinned at first contact, or pinned now)")
    parser.add_argument("--known-nodes", metavar="FILE", help=f"the pinned node keys (default: {FILE_NAME} next "
                        "to the key file)")


def _given(args: argparse.Namespace) -> str | None:
    """--node-key, checked (Usage otherwise)."""
    given = args.node_key.strip().lower() if args.node_key else None
    if given is not None and (len(given) != 64 or any(c not in "0123456789abcdef" for c in given)):
        raise Usage(f"--node-key: expected 64 hex digits of the node's ed25519 key, got {args.node_key!r}")
    return given


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", required=True, metavar="FILE", help="the agency key file (nnode agency-key new)")
    parser.add_argument("--node", required=True, metavar="URL", help="the node's address, like https://node.example")
    parser.add_argument("--credential", metavar="FILE", help="a trust anchor's credential for this agency (JSON)")
    parser.add_argument("--timeout", type=float, default=30, metavar="S", help=argparse.SUPPRESS)


def _run(command: str, args: argparse.Namespace, body: Callable[[AgencyClient], Awaitable[int]]) -> int:
    """Open a client from the arguments, run `body`, and turn errors into one line on stderr and an exit status."""
    where = f"{PROG} {command}"
    try:
        key = load_agency_key(args.key)
        credential = _credential(args.credential) if args.credential else None

        async def main() -> int:
            async with AgencyClient(args.node, key, credential=credential, timeout=args.timeout) as client:
                return await body(client)
        return asyncio.run(main())
    except AgencyClientError as exc:
        at = f" ({exc.where})" if exc.where else ""
        if exc.status >= 400:
            print(f"{where}: the node refused{at}: {exc}", file=sys.stderr)
            return REFUSED
        print(f"{where}: {exc}{at}", file=sys.stderr)
        return USAGE
    except (Usage, NodeError) as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return USAGE


def _credential(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.loads(handle.read(64 * 1024))
    except OSError as exc:
        raise Usage(f"{path}: cannot read the credential: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise Usage(f"{path}: the credential is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Usage(f"{path}: a credential is a JSON object")
    return value


def parse_circle(text: str) -> tuple[str, str, int]:
    """--circle LAT,LON,RADIUS_M into (lat, lon, radius)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not parts[2].isdigit():
        raise Usage(f"--circle: expected LAT,LON,RADIUS_M with the radius in whole metres, got {text!r}")
    return parts[0], parts[1], int(parts[2])


def parse_polygon(text: str) -> list[tuple[str, str]]:
    """--polygon "LAT LON;LAT LON;..." (or LAT,LON pairs) into points."""
    points = []
    for i, part in enumerate(p for p in text.split(";") if p.strip()):
        values = part.replace(",", " ").split()
        if len(values) != 2:
            raise Usage(f"--polygon: point {i + 1} {part.strip()!r}: expected LAT LON")
        points.append((values[0], values[1]))
    return points


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    now = time.time()
    try:
        return build_fields(case_number=args.case, reason=args.reason, start=args.start, end=args.end,
                            circle=parse_circle(args.circle) if args.circle else None,
                            polygon=parse_polygon(args.polygon) if args.polygon else None,
                            urgency="emergency" if args.emergency else "normal", contact=args.contact,
                            expires=now + args.expires_days * 86400)
    except ValueError as exc:
        raise Usage(f"--{exc}") from None


def cmd_request(args: argparse.Namespace) -> int:
    """Post a signed request; print its id and status."""
    try:
        fields = _fields(args)
    except Usage as exc:
        print(f"{PROG} request: {exc}", file=sys.stderr)
        return USAGE

    async def body(client: AgencyClient) -> int:
        stored = await client.post_request(fields)
        print(f"request {stored.get('id')}: {_state(stored, 'accepted')}")
        return 0
    return _run("request", args, body)


def _state(request: dict[str, Any], default: str = "") -> str:
    for name in ("status", "state"):
        value = request.get(name)
        if isinstance(value, str):
            return value
    return default


def describe(request: dict[str, Any]) -> list[str]:
    """Lines describing one request and its disclosures."""
    window = request.get("window") or {}
    head = [f"request {request.get('id')}", f"case {request.get('case_number', '')}", request.get("urgency", ""),
            _state(request)]
    lines = ["  ".join(str(part) for part in head if part),
             f"  window {window.get('start')} to {window.get('end')}, expires {request.get('expires')}"]
    reason = request.get("refused") or request.get("status_reason") or request.get("refusal")
    if isinstance(reason, str) and reason:
        lines.append(f"  refused: {reason}")
    disclosures = request.get("disclosures") or []
    if not disclosures:
        lines.append("  no bundles ready yet")
    for item in disclosures:
        if not isinstance(item, dict):
            continue
        count = item.get("bundles", item.get("ready", 0))
        address = item.get("address") or item.get("url") or "address unknown"
        node = str(item.get("node", "?"))
        lines.append(f"  node {node[:16]}: {count} bundle{'s' if count != 1 else ''} ready, at {address}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    """Print this agency's requests (or one) with their disclosures."""
    async def body(client: AgencyClient) -> int:
        found = [await client.request(args.request_id)] if args.request_id else await client.requests()
        if not found:
            print("no requests from this agency on this node")
        for request in found:
            print("\n".join(describe(request)))
        return 0
    return _run("status", args, body)


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download this agency's bundles into --out and verify each against the node's key."""
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"{PROG} fetch: {out}: {exc.strerror or exc}", file=sys.stderr)
        return USAGE

    try:
        given = _given(args)
    except Usage as exc:
        print(f"{PROG} fetch: {exc}", file=sys.stderr)
        return USAGE
    pins = KnownNodes(args.known_nodes or Path(args.key).parent / FILE_NAME)

    async def body(client: AgencyClient) -> int:
        served = await client.node_key()
        try:
            expected = await asyncio.to_thread(pins.expect, str(client.base), served, given)
        except NodeKeyChanged as exc:
            print(f"{PROG} fetch: FAILED: {exc}", file=sys.stderr)
            return FAILED
        node_key = expected.key
        bundles = [b for b in await client.bundles() if args.request is None or b.get("request_id") == args.request]
        if not bundles:
            print(f"no bundles for this agency on this node{' for request ' + args.request if args.request else ''}")
            return 0
        failed = 0
        for bundle in bundles:
            bundle_id = str(bundle.get("id"))
            path, target = out / f"{bundle_id}{SUFFIX}", out / bundle_id
            if (target / "report.txt").is_file():
                print(f"{bundle_id}: verified before, in {target}")
                continue
            await client.download(bundle_id, path, expected_sha256=bundle.get("sha256"))
            try:
                result = await asyncio.to_thread(verify_bundle, path, client.keys, target, expected_node_key=node_key,
                                                 expected_from=expected.origin)
            except VerifyError as exc:
                failed += 1
                print(f"{bundle_id}: FAILED: {exc}")
                continue
            except NodeError as exc:
                failed += 1
                print(f"{bundle_id}: could not check: {exc}")
                continue
            manifest = result.manifest
            print(f"{manifest['bundle_id']}: verified: made {manifest['created']}, case "
                  f"{manifest['request']['case_number']}, camera "
                  f"{manifest['camera']['name']}, {manifest['clip']['start']} to {manifest['clip']['end']}, "
                  f"{manifest['delivered']['kind']} clip in {target}; node key {expected.origin}")
        return FAILED if failed else 0
    return _run("fetch", args, body)


def cmd_portal(args: argparse.Namespace) -> int:
    """Serve the agency portal on 127.0.0.1 until interrupted (node/sharing/portal.py)."""
    from node.sharing.portal import Portal, describe_address, serve

    try:
        given = _given(args)
    except Usage as exc:
        print(f"{PROG} portal: {exc}", file=sys.stderr)
        return USAGE
    if not 0 <= args.port <= 65535:
        print(f"{PROG} portal: --port: expected 0 to 65535, got {args.port}", file=sys.stderr)
        return USAGE
    pins = KnownNodes(args.known_nodes or Path(args.key).parent / FILE_NAME)
    out = Path(args.out) if args.out else Path(args.key).parent / "bundles"

    def ready(url: str) -> None:
        print(describe_address(url), flush=True)

    async def body(client: AgencyClient) -> int:
        portal = Portal(client=client, pins=pins, out=out, given=given)
        try:
            expected = await portal.expected()
        except NodeKeyChanged as exc:
            print(f"{PROG} portal: FAILED: {exc}", file=sys.stderr)
            return FAILED
        print(f"node {client.base}: node key {expected.key}, {expected.origin}", flush=True)
        await serve(portal, args.port, ready)
        return 0
    return _run("portal", args, body)
