"""The agency client pins each node's key: a man in the middle who serves his own descriptor key and a bundle
signed with it is refused, whether the key was pinned at first contact or given on the command line, and nothing
of his is downloaded or verified."""

from __future__ import annotations

import asyncio
import json
import time

import nacl.signing
import pytest
from aiohttp import ClientSession, web

from node.durable import sha256_file
from node.sharing import build_bundle, load_agency_key, sign_consent, write_agency_key
from node.sharing.agency_keys import AgencyKey
from node.sharing.pins import KnownNodes, PinError
from sync import make_descriptor
from tests.conftest import serving
from tests.sharing.flow import make_video
from tests.sharing.test_agency_client import run


class Middle:
    """A stand-in on the path to a node: first relays the node's own descriptor (and has no bundles), then, once
    `attack` is set, answers with its own key and a bundle signed with it."""

    def __init__(self, node_url: str, bundle: bytes, bundle_id: str) -> None:
        self.node_url, self.bundle, self.bundle_id = node_url, bundle, bundle_id
        self.key = nacl.signing.SigningKey.generate()
        self.attack = False
        self.downloads = 0
        self.app = web.Application()
        self.app.router.add_get("/.well-known/nnode", self.descriptor)
        self.app.router.add_get("/api/agency/bundles", self.listing)
        self.app.router.add_get("/api/agency/bundles/{id}", self.download)

    @property
    def id(self) -> str:
        return self.key.verify_key.encode().hex()

    async def descriptor(self, request: web.Request) -> web.Response:
        nonce = request.query.get("nonce")
        if self.attack:
            return web.json_response(make_descriptor(self.key, name="node-b", location=None, nonce=nonce))
        async with ClientSession() as session, \
                session.get(self.node_url + "/.well-known/nnode", params={"nonce": nonce or ""}) as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    async def listing(self, request: web.Request) -> web.Response:
        bundles = [{"id": self.bundle_id, "request_id": "req-1", "case_number": "C-42", "size": len(self.bundle),
                    "created": int(time.time()), "downloaded": None}] if self.attack else []
        return web.json_response({"ok": True, "bundles": bundles})

    async def download(self, request: web.Request) -> web.Response:
        self.downloads += 1
        return web.Response(body=self.bundle, content_type="application/octet-stream")


def forged_bundle(tmp_path, signer: nacl.signing.SigningKey, agency: AgencyKey) -> bytes:
    """A well-formed bundle for the agency, signed (manifest and consent) by `signer`."""
    video = make_video(tmp_path, "forged.mp4")
    size, digest = sha256_file(video)
    receipt = sign_consent(signer, request_id="req-1", clip_sha256=digest, role="manager", subject="manager",
                           choice="original")
    path = tmp_path / "forged.nnbundle"
    build_bundle(path, video_path=video, consent=receipt, node_signing_key=signer, agency_verify_key=agency.verify_key,
                 encryption_key=agency.encryption_key,
                 request_id="req-1", case_number="C-42", camera_id="yard", camera_name="Yard", latitude="40.7128",
                 longitude="-74.0060", clip_start=time.time() - 600, clip_end=time.time() - 598,
                 original_sha256=digest, original_size=size, redaction_method=None)
    return path.read_bytes()


def make_key(path):
    path.parent.mkdir()
    write_agency_key(path)
    return load_agency_key(path)


@pytest.fixture
async def middle(make_node, tmp_path):
    node = await make_node("b")
    key_file = tmp_path / "agency" / "agency.key"   # the agency's own folder, where the pins go too
    agency = await asyncio.to_thread(make_key, key_file)
    stand_in = Middle(node.url, b"", "f" * 32)
    stand_in.bundle = await asyncio.to_thread(forged_bundle, tmp_path, stand_in.key, agency)
    async with serving(stand_in.app) as url:
        yield node, stand_in, url, key_file


async def test_a_node_key_changed_after_first_contact_is_refused(middle, tmp_path):
    node, stand_in, url, key_file = middle
    common = ["--key", str(key_file), "--node", url, "--out", str(tmp_path / "case")]
    status, out, err = await run("fetch", *common)
    assert status == 0 and "no bundles" in out, (out, err)
    pins = json.loads((key_file.parent / "known-nodes.json").read_text())
    assert pins["nodes"][url]["key"] == node.id and pins["nodes"][url]["source"] == "first contact"

    stand_in.attack = True
    status, out, err = await run("fetch", *common)
    assert status == 3 and out == "", (out, err)
    assert f"answers with node key {stand_in.id}, but node key {node.id} was pinned for it on " in err, err
    assert "VERIFIED" not in out + err and stand_in.downloads == 0
    assert not (tmp_path / "case" / stand_in.bundle_id).exists()
    # The pin stays: the next try is refused again.
    assert json.loads((key_file.parent / "known-nodes.json").read_text()) == pins
    assert (await run("fetch", *common))[0] == 3


async def test_a_key_given_on_the_command_line_refuses_a_middle_at_first_contact(middle, tmp_path):
    node, stand_in, url, key_file = middle
    stand_in.attack = True
    pins = tmp_path / "pins.json"
    common = ["--key", str(key_file), "--node", url, "--out", str(tmp_path / "case"), "--known-nodes", str(pins)]
    status, out, err = await run("fetch", *common, "--node-key", node.id)
    assert status == 3 and out == "", (out, err)
    assert f"answers with node key {stand_in.id}, not the node key {node.id} given on the command line" in err
    assert stand_in.downloads == 0 and not pins.exists()
    status, out, err = await run("fetch", *common, "--node-key", "12ab")
    assert status == 2 and "--node-key: expected 64 hex digits" in err


def test_a_pin_file_that_is_not_ours_is_refused_with_its_name(tmp_path):
    path = tmp_path / "known-nodes.json"
    path.write_text('{"v": 1, "nodes": {"http://a": {"key": "xyz"}}}')
    with pytest.raises(PinError, match=r"known-nodes.json: nodes\['http://a'\].key: expected 64 lowercase hex"):
        KnownNodes(path).expect("http://a", "ab" * 32)
    assert path.read_text() == '{"v": 1, "nodes": {"http://a": {"key": "xyz"}}}'
