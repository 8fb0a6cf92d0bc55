"""Key separation: the node's signing seed signs and nothing else; the resident pseudonym in consent receipts is an
HMAC under a secret derived for that purpose alone, stable for one resident and request, different across
requests, and no longer the HMAC keyed with the seed itself."""

from __future__ import annotations

import hashlib
import hmac
import json

import nacl.signing
import pytest

from node.identity import derive_secret
from node.keys import DESK, KEY
from tests.people import browser, call, invite, join
from tests.sharing.flow import add_clip, make_video, request_fields
from tests.sharing.test_sharing import _resident_id, building  # noqa: F401 (a fixture)


async def receipt_ids(node, request_id: str) -> list[str]:
    rows = await node.app[DESK].db.reader.execute_fetchall(
        "SELECT receipt FROM consents WHERE request_id = ? ORDER BY id", (request_id,))
    return [json.loads(r[0])["by"]["id"] for r in rows]


async def test_the_resident_pseudonym_comes_from_its_own_derived_key(building, tmp_path):  # noqa: F811
    node, manager, agency, clips, start = building
    async with browser() as alice:
        await join(node, alice, (await invite(node, manager, "2A"))["code"])
        subject = await _resident_id(node)
        upload = await add_clip(node, make_video(tmp_path, "door.mp4"), start=start + 1200, camera="upload",
                                owner=f"resident:{subject}")
        first, second = request_fields(start=start), request_fields(start=start)
        for fields in (first, second):
            assert (await agency.ask(node.url, fields))[0] == 201
        url = f"{node.url}/api/requests/{{}}/clips/{upload.uid}/consent"
        for fields in (first, second):
            status, body = await call(alice, "POST", url.format(fields["id"]), json={"choice": "original"})
            assert status == 201, body
        # Withdrawn and given again: the same pseudonym for the same request.
        assert (await call(alice, "DELETE", url.format(first["id"])))[0] == 200
        assert (await call(alice, "POST", url.format(first["id"]), json={"choice": "original"}))[0] == 201
        await node.app[DESK].idle()

    (a1, a2), (b1,) = await receipt_ids(node, first["id"]), await receipt_ids(node, second["id"])
    assert a1 == a2 and a1 != b1 and a1.startswith("resident-") and len(a1) == len("resident-") + 16
    seed = node.app[KEY].encode()
    old = hmac.new(seed, f"resident:{subject}:{first['id']}".encode(), hashlib.sha256).hexdigest()[:16]
    assert a1 != f"resident-{old}"
    secret = derive_secret(node.app[KEY], b"nnode-pseudonym")
    new = hmac.new(secret, f"resident:{subject}:{first['id']}".encode(), hashlib.sha256).hexdigest()[:16]
    assert a1 == f"resident-{new}"


def test_derived_secrets_differ_per_purpose_and_from_the_seed():
    key = nacl.signing.SigningKey(bytes(range(32)))
    pseudonyms, other = derive_secret(key, b"nnode-pseudonym"), derive_secret(key, b"nnode-other")
    assert len(pseudonyms) == 32 and pseudonyms != other and key.encode() not in (pseudonyms, other)
    assert derive_secret(key, b"nnode-pseudonym") == pseudonyms   # stable: receipts stay consistent over restarts
    assert derive_secret(nacl.signing.SigningKey(bytes(32)), b"nnode-pseudonym") != pseudonyms
    with pytest.raises(ValueError, match="purpose: expected 1 to 16 bytes"):
        derive_secret(key, b"x" * 17)
