"""The agency side of sharing, end to end against a real node: `nnode agency-client request / status / fetch` post a
signed request, follow it, and download and verify the bundle an owner consented to; calls that are unsigned,
garbled, replayed or from an unregistered key are refused with a clear reason, and so is a request out of policy."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import nacl.signing
import pytest
from aiohttp import web

from node.sharing import load_agency_key, write_agency_key
from node.sharing.agency_cli import add_parser, parse_circle, parse_polygon
from node.sharing.client import AgencyClient, AgencyClientError, build_fields
from node.sharing.requests import format_time
from sync import sign_request as sign_http
from tests.conftest import serving, wait_until
from tests.people import browser, call, claim

# Someone crosses the picture for 1.5 s every 5 s; pre and post capture of 1 s. The camera is at the node.
SIM = {"id": "yard", "name": "Back yard", "url": "sim:?width=320&height=240&fps=10&period=5&walk=1.5",
       "pre_capture": 1, "post_capture": 1}
HERE = {"node__latitude": "40.7128", "node__longitude": "-74.0060"}
CIRCLE = "40.7128,-74.0060,150"


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run `nnode agency-client ARGV...` (its own asyncio loop, so call it in a thread); (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="nnode")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["agency-client", *argv])
    assert args.offline is True  # main() runs it without a config file or data folder
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = args.func(args)
    return status, out.getvalue(), err.getvalue()


async def run(*argv: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(cli, list(argv))


async def register(node, manager, key: nacl.signing.SigningKey, name: str = "Metro Police Department") -> None:
    status, body = await call(manager, "POST", node.url + "/api/agencies", json={
        "key": key.verify_key.encode().hex(), "name": name, "jurisdiction": "Metro City",
        "contact": "records@metro.example"})
    assert status in (200, 201), body


def window_args(minutes_before: int = 20, minutes_after: int = 5) -> list[str]:
    now = time.time()
    return ["--start", format_time(now - minutes_before * 60), "--end", format_time(now + minutes_after * 60)]


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "agency.key"
    write_agency_key(path)
    return path


async def test_request_status_and_fetch_from_the_command_line(make_node, key_file, tmp_path, monkeypatch):
    node = await make_node("a", cameras__devices=[SIM], **HERE)
    key = await asyncio.to_thread(load_agency_key, key_file)
    common = ["--key", str(key_file), "--node", node.url]
    async with browser() as manager:
        await claim(node, manager)
        await register(node, manager, key)

        status, out, err = await run("request", *common, "--case", "2026-004512", "--reason",
                                     "parcel theft in the back yard", *window_args(), "--circle", CIRCLE,
                                     "--contact", "Det. R. Diaz, +1 212 555 0100", "--expires-days", "7")
        assert status == 0, err
        request_id = out.split()[1].rstrip(":")
        assert out.startswith(f"request {request_id}: ") and len(request_id) == 32, out

        status, out, err = await run("status", *common)
        assert status == 0, err
        assert f"request {request_id}" in out and "case 2026-004512" in out and "no bundles ready yet" in out
        status, out, _ = await run("status", *common, request_id)
        assert status == 0 and request_id in out
        status, out, err = await run("status", *common, "f" * 32)
        assert status == 1 and out == "" and "the node refused" in err and "no request" in err, err
        status, out, err = await run("fetch", *common, "--out", str(tmp_path / "none"))
        assert status == 0 and "no bundles" in out, err

        # The manager sees the request with the yard's clip and shares that one clip (redacted by default).
        async def a_clip() -> list:
            status, body = await call(manager, "GET", node.url + "/api/requests")
            assert status == 200, body
            mine = [r for r in body["requests"] if r["id"] == request_id]
            return mine and mine[0]["clips"]
        await wait_until(a_clip, timeout=60, interval=0.5)
        clip = (await a_clip())[0]
        status, body = await call(manager, "POST", node.url + f"/api/requests/{request_id}/clips/{clip['uid']}"
                                  "/consent", json={"choice": "redacted"})
        assert status in (200, 201), body

        async with AgencyClient(node.url, key) as client:
            async def bundles() -> list:
                return await client.bundles()
            await wait_until(bundles, timeout=180, interval=1.0)
            (bundle,) = await bundles()
            assert bundle["request_id"] == request_id and bundle["case_number"] == "2026-004512"
            assert not bundle["downloaded"]
            assert await client.node_key() == node.id
            view = await client.request(request_id)
            assert [d["bundles"] for d in view["disclosures"] if d["node"] == node.id] in ([1], [])

        status, out, err = await run("status", *common, request_id)
        assert status == 0, err

        # fetch: downloads, verifies against the node's key, extracts into DIR/<bundle id>/
        out_dir = tmp_path / "case"
        status, out, err = await run("fetch", *common, "--out", str(out_dir), "--request", request_id)
        assert status == 0, (out, err)
        assert out.startswith(f"{bundle['id']}: verified: made {bundle['created']}, case 2026-004512, camera "
                              "Back yard"), out
        target = out_dir / bundle["id"]
        assert (out_dir / f"{bundle['id']}.nnbundle").stat().st_size == bundle["size"]
        assert sorted(p.name for p in target.iterdir()) == ["clip.mp4", "manifest.json", "manifest.sig",
                                                             "report.txt"]
        manifest = json.loads((target / "manifest.json").read_bytes())
        assert manifest["node_key"] == node.id and manifest["request"]["id"] == request_id
        # The node's list, the manifest and the report name the bundle and its date the same way.
        assert manifest["bundle_id"] == bundle["id"] and manifest["created"] == bundle["created"]
        assert f"bundle id   {bundle['id']}, made {bundle['created']} by " in (target / "report.txt").read_text()
        assert manifest["delivered"]["kind"] == "redacted" and manifest["consent"]["choice"] == "redacted"
        assert not list(out_dir.glob(".*.part"))
        status, out, _ = await run("fetch", *common, "--out", str(out_dir))
        assert status == 0 and out == f"{bundle['id']}: verified before, in {target}\n"
        async with AgencyClient(node.url, key) as client:
            assert (await client.bundles())[0]["downloaded"]

        # The node's key was pinned at first contact (the fetch that found no bundles), and the report says so.
        pins = json.loads((key_file.parent / "known-nodes.json").read_text())
        assert pins["nodes"][node.url]["key"] == node.id and pins["nodes"][node.url]["source"] == "first contact"
        report = (target / "report.txt").read_text()
        assert f"(the expected node key, pinned on {pins['nodes'][node.url]['since']} (first contact))" in report
        status, out, err = await run("fetch", *common, "--out", str(tmp_path / "again"), "--known-nodes",
                                     str(tmp_path / "fresh.json"))
        assert status == 0 and "node key first contact now, unverified" in out, (out, err)
        report = (tmp_path / "again" / bundle["id"] / "report.txt").read_text()
        assert "(the expected node key, first contact now, unverified: " in report

        # A node that answers with another key is refused before anything is downloaded, exit 3.
        async def another_node(self) -> str:
            return "ab" * 32
        monkeypatch.setattr(AgencyClient, "node_key", another_node)
        status, out, err = await run("fetch", *common, "--out", str(tmp_path / "pinned"))
        assert status == 3 and out == "", (out, err)
        assert f"answers with node key {'ab' * 32}, but node key {node.id} was pinned for it on " in err, err
        assert not (tmp_path / "pinned" / bundle["id"]).exists()


async def test_a_request_out_of_policy_is_refused_with_the_reason(make_node, key_file):
    node = await make_node("a", **HERE)
    common = ["--key", str(key_file), "--node", node.url]
    async with browser() as manager:
        await claim(node, manager)
        await register(node, manager, await asyncio.to_thread(load_agency_key, key_file))
    status, out, err = await run("request", *common, "--case", "C-1", "--reason", "theft",
                                 "--start", format_time(time.time() - 3600), "--end", format_time(time.time() - 3300),
                                 "--circle", CIRCLE, "--contact", "desk")
    assert status == 1 and out == ""
    assert err.startswith("nnode agency-client request: the node refused (POST http://127.0.0.1:")
    assert "/api/agency/requests): out of policy: the window is 5 min; it must be from 15 min to 12 h" in err
    assert err.count("\n") == 1
    status, out, err = await run("request", *common, "--case", "C-1", "--reason", "theft", *window_args(),
                                 "--circle", "40.7128,-74.0060,900", "--contact", "desk")
    assert status == 1 and "out of policy: the area is" in err and "square miles" in err, err
    status, out, err = await run("status", *common)
    assert status == 0 and out == "no requests from this agency on this node\n", err


async def test_unsigned_garbled_replayed_and_unregistered_calls_are_refused(make_node, key_file, tmp_path):
    node = await make_node("a", **HERE)
    key = (await asyncio.to_thread(load_agency_key, key_file)).signing
    url = node.url + "/api/agency/requests"
    async with browser() as manager:
        await claim(node, manager)
        await register(node, manager, key)
    async with aiohttp.ClientSession() as session:
        async def get(headers: dict) -> tuple[int, dict]:
            async with session.get(url, headers=headers) as resp:
                return resp.status, await resp.json()

        status, body = await get({})
        assert status == 403 and "not signed" in body["error"], body
        headers = sign_http(key, "GET", url, tag="nnode-agency")
        sig = headers["Signature"]
        garbled = headers | {"Signature": sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]}
        status, body = await get(garbled)
        assert status == 403 and "does not verify" in body["error"], body
        status, body = await get(headers | {"Signature": "nnode=:not base64!:"})
        assert status == 403 and "agency call refused" in body["error"], body
        status, body = await get(sign_http(key, "GET", url))  # a sync signature (tag nnode-sync) is not an agency's
        assert status == 403 and "tag" in body["error"], body
        status, body = await get(sign_http(key, "GET", node.url + "/api/agency/bundles", tag="nnode-agency"))
        assert status == 403 and "does not verify" in body["error"], body  # signed for another path
        status, body = await get(headers)
        assert status == 200 and body["requests"] == []
        status, body = await get(headers)
        assert status == 403 and "replay" in body["error"], body
        stale = sign_http(key, "GET", url, now=int(time.time()) - 3600, tag="nnode-agency")
        status, body = await get(stale)
        assert status == 403 and "clock skew" in body["error"], body
        stranger = nacl.signing.SigningKey.generate()
        status, body = await get(sign_http(stranger, "GET", url, tag="nnode-agency"))
        assert status == 403 and "is not registered at this node" in body["error"], body

    # The same refusals through the client and the command line: the node's reason, one line, exit status 1.
    async with AgencyClient(node.url, nacl.signing.SigningKey.generate()) as client:
        with pytest.raises(AgencyClientError) as refused:
            await client.requests()
    assert refused.value.status == 403 and "is not registered at this node" in str(refused.value)
    assert refused.value.where == f"GET {node.url}/api/agency/requests"
    stranger_file = tmp_path / "stranger.key"
    await asyncio.to_thread(write_agency_key, stranger_file)
    status, out, err = await run("status", "--key", str(stranger_file), "--node", node.url)
    assert status == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"nnode agency-client status: the node refused (GET {node.url}/api/agency/requests): "
                          "agency key ") and "is not registered at this node" in err, err
    status, _, err = await run("request", "--key", str(stranger_file), "--node", node.url, "--case", "C-1",
                               "--reason", "theft", *window_args(), "--circle", CIRCLE, "--contact", "desk")
    assert status == 1 and "is not registered at this node" in err, err


async def test_usage_file_and_network_errors_exit_2(make_node, key_file, tmp_path):
    node = await make_node("a", **HERE)
    common = ["--key", str(key_file), "--node", node.url]
    status, _, err = await run("status", "--key", str(tmp_path / "missing.key"), "--node", node.url)
    assert status == 2 and "missing.key: cannot read the agency key" in err, err
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    status, _, err = await run("status", "--key", str(bad), "--node", node.url)
    assert status == 2 and "bad.key: not an agency key file" in err
    status, _, err = await run("status", "--key", str(key_file), "--node", "ftp://example")
    assert status == 2 and "expected the node's address" in err
    status, _, err = await run("status", "--key", str(key_file), "--node", "http://127.0.0.1:9")
    assert status == 2 and err.startswith("nnode agency-client status: cannot reach the node: ") \
        and "(GET http://127.0.0.1:9/api/agency/requests)" in err, err
    status, _, err = await run("request", *common, "--case", "C-1", "--reason", "theft", "--start", "yesterday",
                               "--end", "now", "--circle", CIRCLE, "--contact", "desk")
    assert status == 2 and "--start: expected an ISO 8601 time" in err, err
    status, _, err = await run("request", *common, "--case", "C-1", "--reason", "theft", *window_args(),
                               "--circle", "40.7,-74.0", "--contact", "desk")
    assert status == 2 and "--circle: expected LAT,LON,RADIUS_M" in err, err
    status, _, err = await run("request", *common, "--credential", str(tmp_path / "nope.json"), "--case", "C-1",
                               "--reason", "theft", *window_args(), "--circle", CIRCLE, "--contact", "desk")
    assert status == 2 and "nope.json: cannot read the credential" in err, err


def test_nnode_has_the_agency_client_commands():
    from node.cli import build_parser

    args = build_parser().parse_args(["agency-client", "fetch", "--key", "k", "--node", "http://n", "--out", "d"])
    assert args.offline is True and args.func.__name__ == "cmd_fetch" and args.request is None


def test_build_fields_and_area_arguments():
    fields = build_fields(case_number="C-42", reason="burglary", start="2026-11-20T21:00:00Z",
                          end=1795208400 + 1800, circle=(40.7128, "-74.0060", 300.0), urgency="emergency",
                          contact="desk", expires=datetime(2026, 12, 20, tzinfo=timezone.utc))
    assert fields == {"case_number": "C-42", "reason": "burglary",
                      "window": {"start": "2026-11-20T21:00:00Z", "end": "2026-11-20T21:30:00Z"},
                      "area": {"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 300}},
                      "urgency": "emergency", "contact": "desk", "expires": "2026-12-20T00:00:00Z"}
    polygon = build_fields(case_number="C", reason="r", start=0, end=900, contact="c", expires=86400,
                           polygon=parse_polygon("40.7120 -74.0070; 40.7135,-74.0070;40.7135 -74.0050"))
    assert polygon["area"] == {"polygon": [["40.7120", "-74.0070"], ["40.7135", "-74.0070"], ["40.7135", "-74.0050"]]}
    assert parse_circle(" 40.7128, -74.0060 ,300") == ("40.7128", "-74.0060", 300)
    with pytest.raises(ValueError, match="either a circle"):
        build_fields(case_number="C", reason="r", start=0, end=900, contact="c", expires=86400)


async def test_credential_header_is_canonical_base64url(key_file):
    """A client with a credential sends it on every call, as base64url of its canonical JSON without padding."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("NNode-Agency-Credential", ""))
        return web.json_response({"ok": True, "requests": []})
    app = web.Application()
    app.router.add_get("/api/agency/requests", handler)
    credential = {"v": 1, "name": "Métro", "agency": "ab" * 32, "sig": "00"}
    key = await asyncio.to_thread(load_agency_key, key_file)
    async with serving(app) as base:
        async with AgencyClient(base + "/", key, credential=credential) as client:
            assert await client.requests() == []
    (value,) = seen
    assert "=" not in value
    assert base64.urlsafe_b64decode(value + "==") == \
        b'{"agency":"' + b"ab" * 32 + b'","name":"M\xc3\xa9tro","sig":"00","v":1}'
