"""An agency has two keys: an ed25519 key signs its calls and requests, a separate X25519 key opens its bundles. The
request names the encryption key and the node seals to it, so the signing key alone opens nothing; a request
without one, or with a low-order point, is refused naming the field; an old single-seed key file still opens the
bundles made for it, posts nothing, and says how to make a new one."""

from __future__ import annotations

import asyncio
import time

import nacl.public
import nacl.signing
import pytest

import node.camera.motion  # noqa: F401 (the camera manager imports OpenCV lazily, in the loop: load it here first)
from node.sharing import VerifyError, load_agency_key, verify_bundle, write_agency_key
from node.sharing.agency_keys import AgencyKey, box_key
from node.sharing.errors import RequestError, SharingError
from node.sharing.requests import parse_request, sign_request
from tests.people import browser, call, claim
from tests.sharing.flow import Agency, add_clip, make_video, request_fields
from tests.sharing.test_sharing import HERE, consent

NOW = time.time()
LOW_ORDER = "00" * 32   # the X25519 identity: a seal to it is readable by anyone


def signed(key: AgencyKey | nacl.signing.SigningKey, **changes) -> dict:
    return sign_request(request_fields(start=NOW - 3600) | changes, key)


def test_a_request_names_the_encryption_key_and_its_signature_covers_it():
    keys = AgencyKey(nacl.signing.SigningKey.generate(), nacl.public.PrivateKey.generate())
    document = signed(keys)
    assert document["encryption_key"] == keys.encryption_key
    assert parse_request(document, now=time.time()).encryption_key == keys.encryption_key
    swapped = dict(document, encryption_key=nacl.public.PrivateKey.generate().public_key.encode().hex())
    with pytest.raises(RequestError, match="sig: the signature does not match"):
        parse_request(swapped, now=time.time())


def test_a_request_without_a_usable_encryption_key_is_refused_naming_it():
    bare = nacl.signing.SigningKey.generate()
    with pytest.raises(RequestError, match="missing field 'encryption_key'"):
        parse_request(signed(bare), now=time.time())
    with pytest.raises(RequestError, match=f"encryption_key: {LOW_ORDER} is a low-order point"):
        parse_request(signed(bare, encryption_key=LOW_ORDER), now=time.time())
    for bad in ("AB" * 32, "ab" * 31, 7):
        with pytest.raises(RequestError, match="encryption_key: expected 64 lowercase hex digits"):
            parse_request(signed(bare, encryption_key=bad), now=time.time())
    with pytest.raises(SharingError, match="low-order point"):
        box_key(LOW_ORDER)


def test_an_old_single_seed_key_file_opens_old_bundles_but_posts_nothing(tmp_path):
    path = tmp_path / "old.key"
    seed = nacl.signing.SigningKey.generate()
    path.write_text(seed.encode().hex() + "\n")
    old = load_agency_key(path)
    assert old.legacy and old.public == seed.verify_key.encode().hex()
    with pytest.raises(RequestError, match="make a new one with `nnode agency-key new FILE`"):
        sign_request(request_fields(), old)
    new = write_agency_key(tmp_path / "new.key")
    again = load_agency_key(tmp_path / "new.key")
    assert not again.legacy and (again.public, again.encryption_key) == (new.public, new.encryption_key)
    assert (tmp_path / "new.key").read_text().count("\n") == 3


async def test_the_node_seals_to_the_key_the_request_names_and_the_signing_key_opens_nothing(make_node, tmp_path):
    node = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1],
                           cameras__devices=[{"id": "yard", "url": "sim:", "detect_motion": False}])
    start = time.time() - 50 * 60
    clip = await add_clip(node, make_video(tmp_path), start=start + 600)
    agency = Agency()
    try:
        async with browser() as manager:
            await claim(node, manager)
            status, body = await call(manager, "POST", node.url + "/api/agencies",
                                      json={"key": agency.id, "name": "Metro PD", "jurisdiction": "Metro City"})
            assert status == 201, body
            # A request naming a low-order point is refused by the node, naming the field.
            status, answer = await agency.call("POST", node.url + "/api/agency/requests",
                                               signed(agency.key, encryption_key=LOW_ORDER))
            assert status == 400 and "encryption_key" in answer["error"] and "low-order" in answer["error"]
            status, answer = await agency.ask(node.url, request_fields(start=start))
            assert status == 201, answer
            request_id = answer["request"]["id"]
            await consent(manager, node, request_id, clip.uid, choice="original")
        (listed,) = (await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"]
        status, data = await agency.call("GET", node.url + listed["url"], raw=True)
        assert status == 200
        path = tmp_path / "b.nnbundle"
        path.write_bytes(data)
        result = await asyncio.to_thread(verify_bundle, path, agency.keys, tmp_path / "out",
                                         expected_node_key=node.id)
        assert result.manifest["encryption_key"] == agency.keys.encryption_key
        assert f"sealed to encryption key {agency.keys.encryption_key}" in result.report
        # The signing key alone (as an old key file would hold it) does not open the bundle.
        with pytest.raises(VerifyError, match="does not open with this key file's encryption key"):
            await asyncio.to_thread(verify_bundle, path, agency.key, tmp_path / "nothing")
        assert not (tmp_path / "nothing").exists()
        # Another agency's encryption key under this agency's signing key opens nothing either.
        other = AgencyKey(agency.key, nacl.public.PrivateKey.generate())
        with pytest.raises(VerifyError, match="does not open"):
            await asyncio.to_thread(verify_bundle, path, other, tmp_path / "nothing")
    finally:
        await agency.close()
