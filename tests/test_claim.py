"""First-boot claim: one-time code (hashed, single use, expiring), setup page, QR only on the device's screen."""

import re
import sqlite3

import aiohttp
import pytest

from node.keys import CLAIMS
from node.people.claim import CODE_TTL, normalise


async def test_unclaimed_node_has_one_hashed_code(make_node, capsys):
    node = await make_node("c")
    claims = node.app[CLAIMS]
    code = claims.current
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){2}", code)
    assert code in capsys.readouterr().out            # the console banner
    with sqlite3.connect(node.config.db_path) as conn:
        stored = conn.execute("SELECT code_hash FROM claim_codes WHERE used IS NULL").fetchall()
    assert len(stored) == 1 and stored[0][0].startswith("scrypt$") and code not in stored[0][0]
    # A new code replaces the old one.
    newer = await claims.issue()
    assert newer != code
    with sqlite3.connect(node.config.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM claim_codes WHERE used IS NULL").fetchone()[0] == 1


async def test_claim_makes_the_manager_once(make_node):
    node = await make_node("c")
    code = node.app[CLAIMS].current
    # A browser keeps cookies for an address like 127.0.0.1; aiohttp's jar does only when told to.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(node.url + "/api/session") as resp:
            assert (await resp.json())["role"] is None
        async with session.post(node.url + "/setup/claim", json={"code": "ZZZZ-ZZZZ-ZZZZ",
                                                                  "password": "correct horse battery"}) as resp:
            body = await resp.json()
            assert resp.status == 403 and "wrong, used or expired" in body["error"]
        async with session.post(node.url + "/setup/claim", json={"code": code, "password": "short"}) as resp:
            assert resp.status == 400 and "at least 12" in (await resp.json())["error"]
        typed = code.lower().replace("-", " ").replace("0", "o")    # as people type it
        async with session.post(node.url + "/setup/claim", json={"code": typed,
                                                                  "password": "correct horse battery"}) as resp:
            assert resp.status == 200 and (await resp.json())["role"] == "manager"
            assert "nnode_session" in resp.cookies
        async with session.get(node.url + "/api/session") as resp:
            assert (await resp.json())["role"] == "manager"
        async with session.get(node.url + "/setup") as resp:
            assert "This node has a manager" in await resp.text()
    async with aiohttp.ClientSession() as other:
        async with other.post(node.url + "/setup/claim", json={"code": code,
                                                                "password": "another long password"}) as resp:
            assert resp.status == 409
        async with other.get(node.url + "/api/session") as resp:
            assert (await resp.json())["role"] is None


async def test_expired_code_is_refused(make_node):
    node = await make_node("c")
    claims = node.app[CLAIMS]
    import time

    from node.people.claim import ClaimError
    with pytest.raises(ClaimError, match="expired"):
        await claims.claim(claims.current, "correct horse battery", now=int(time.time()) + CODE_TTL + 1)


async def test_qr_only_for_the_devices_own_screen(make_node):
    node = await make_node("c")
    async with aiohttp.ClientSession() as session:
        async with session.get(node.url + "/setup") as resp:
            page = await resp.text()
            assert resp.status == 200 and '<label for="code">' in page and "qr.svg" in page   # from loopback
        async with session.get(node.url + "/setup/qr.svg") as resp:
            assert resp.status == 200 and resp.content_type == "image/svg+xml"
            assert b"<svg" in await resp.read()
    # Seen from the building's network, the page has the form but no QR, and the QR route refuses.
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    from node.people import setup
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("192.0.2.10", 50000) if name == "peername" else default)
    for path, handler in (("/setup", setup.setup_page), ("/setup/qr.svg", setup.setup_qr)):
        request = make_mocked_request("GET", path, app=node.app, transport=transport)
        assert request.remote == "192.0.2.10"
        if handler is setup.setup_qr:
            with pytest.raises(setup.ClaimRefused, match="own screen"):
                await handler(request)
        else:
            page = (await handler(request)).text
            assert '<label for="code">' in page and "qr.svg" not in page


def test_normalise_accepts_what_people_type():
    assert normalise("abcd efgh jkmn") == "ABCD-EFGH-JKMN"
    assert normalise("o1il-0000-1111") == "0111-0000-1111"


async def test_claim_attempts_are_rate_limited(make_node, monkeypatch):
    node = await make_node("c")
    from node.people import setup
    setup._attempts_per_address._buckets.clear()
    # The device's own screen (loopback) is never limited; this test plays a host on the building's network.
    monkeypatch.setattr(setup, "_is_loopback", lambda request: False)
    async with aiohttp.ClientSession() as session:
        codes = []
        for _ in range(7):
            async with session.post(node.url + "/setup/claim", json={"code": "ZZZZ-ZZZZ-ZZZZ",
                                                                      "password": "correct horse battery"}) as r:
                codes.append(r.status)
    assert codes[:5] == [403] * 5 and codes[5:] == [429, 429]
    setup._attempts_per_address._buckets.clear()
