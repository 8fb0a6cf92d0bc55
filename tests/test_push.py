"""Web Push: a push service on loopback receives what the node sends when an alert, report or SOS is published; the
test decrypts it with the device's own keys (RFC 8291) and checks the VAPID JWT against the node's public key
(RFC 8292). What each device chose decides what wakes it; a push service's 410 forgets the device; with the push
service out of reach the console says pushes cannot be delivered."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from dataclasses import dataclass, field

import http_ece
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from node.keys import PUSH
from node.push.notices import MAX_PAYLOAD, notice_for
from tests.conftest import wait_until
from tests.people import browser, call, claim, invite, join
from tests.test_sos import _building, _close


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """A browser's push subscription: its P-256 key pair and auth secret, and what its push service received."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, **choices) -> dict:
        public = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}, **choices}

    def decrypt(self, body: bytes) -> dict:
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"))


class PushService:
    """A push service on loopback: records each POST per device path; a path can be made to answer 410."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        self.gone: set[str] = set()
        self.app = web.Application()
        self.app.router.add_post("/push/{device}", self.handle)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.url = ""

    async def start(self) -> "PushService":
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def handle(self, request: web.Request) -> web.Response:
        device = request.match_info["device"]
        self.received.setdefault(device, []).append((dict(request.headers), await request.read()))
        return web.Response(status=410 if device in self.gone else 201)

    def device(self, name: str) -> Device:
        return Device(f"{self.url}/push/{name}")

    def count(self, name: str) -> int:
        return len(self.received.get(name, []))


def check_vapid(headers: dict[str, str], node_public_key: str, audience: str) -> dict:
    """The VAPID Authorization header's JWT, verified with the node's public key; returns its claims."""
    scheme, _, params = headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == node_public_key
    header, claims, signature = fields["t"].split(".")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
    raw = unb64url(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))   # raises if forged
    assert json.loads(unb64url(header)) == {"typ": "JWT", "alg": "ES256"}
    decoded = json.loads(unb64url(claims))
    assert decoded["aud"] == audience and decoded["exp"] > time.time() and decoded["sub"].startswith("mailto:")
    return decoded


async def push_service():
    return await PushService().start()


async def test_an_alert_reaches_a_device_encrypted_and_signed_and_choices_filter_it(make_node):
    service = await push_service()
    node = await make_node("home", push__loopback_endpoints=True)
    manager, ada, ben, sam = await _building(node)
    try:
        severe_only, everything = service.device("ada"), service.device("ben")
        status, body = await call(ada, "POST", node.url + "/api/push/subscriptions",
                                  json=severe_only.subscription(min_severity="Severe"))
        assert status == 201, body
        assert body["device"] == {"id": body["device"]["id"], "endpoint": severe_only.endpoint,
                                  "min_severity": "Severe", "alerts": True, "reports": False, "sos": False}
        status, body = await call(ben, "POST", node.url + "/api/push/subscriptions",
                                  json=everything.subscription(min_severity="Minor", reports=True))
        assert status == 201, body
        _, info = await call(ada, "GET", node.url + "/api/push")
        assert [d["endpoint"] for d in info["devices"]] == [severe_only.endpoint]
        assert len(unb64url(info["public_key"])) == 65

        # A moderate alert wakes Ben (all alerts) but not Ada (severe only); the extreme one after it wakes both.
        status, moderate = await call(manager, "POST", node.url + "/api/alerts",
                                      json={"event": "Water shut-off", "severity": "Moderate",
                                            "instruction": "Fill a kettle before 9."})
        assert status == 200, moderate
        status, extreme = await call(manager, "POST", node.url + "/api/alerts",
                                     json={"event": "Gas leak", "severity": "Extreme",
                                           "instruction": "Leave by the east stairs."})
        assert status == 200, extreme
        await wait_until(lambda: service.count("ada") >= 1 and service.count("ben") >= 2)
        await node.app[PUSH].idle()
        assert service.count("ada") == 1 and service.count("ben") == 2

        headers, raw = service.received["ada"][0]
        assert b"Gas leak" not in raw and b"east stairs" not in raw   # the push service sees no content
        assert headers["Content-Encoding"] == "aes128gcm" and headers["Urgency"] == "high" and int(headers["TTL"]) > 0
        check_vapid(headers, info["public_key"], service.url)
        notice = severe_only.decrypt(raw)
        assert notice == {"title": "Extreme alert: Gas leak", "body": "Leave by the east stairs.",
                          "tag": f"alert-{extreme['event']}", "url": f"/?alert={extreme['event']}#alerts",
                          "kind": "alert", "severity": "Extreme"}
        assert [everything.decrypt(r)["title"] for _, r in service.received["ben"]] == [
            "Moderate alert: Water shut-off", "Extreme alert: Gas leak"]

        # A neighbor's report wakes Ben, who asked for reports; Ada did not.
        status, _ = await call(sam, "POST", node.url + "/api/reports",
                               json={"what": "The lobby door does not latch", "category": "safety-hazard",
                                     "where": "main lobby"})
        assert status in (200, 201)
        await wait_until(lambda: service.count("ben") >= 3)
        await node.app[PUSH].idle()
        report = everything.decrypt(service.received["ben"][2][1])
        assert report["kind"] == "report" and report["body"] == "The lobby door does not latch"
        assert service.count("ada") == 1
    finally:
        await _close(manager, ada, ben, sam)
        await service.runner.cleanup()


async def test_sos_wakes_on_call_responders_and_a_gone_device_is_forgotten(make_node):
    service = await push_service()
    node = await make_node("home", push__loopback_endpoints=True)
    manager, ada, ben, sam = await _building(node)   # Sam is on call
    try:
        responder, neighbour, stale = service.device("sam"), service.device("ben"), service.device("stale")
        for session, device in ((sam, responder), (ben, neighbour), (ada, stale)):
            status, body = await call(session, "POST", node.url + "/api/push/subscriptions",
                                      json=device.subscription(alerts=False))
            assert status == 201, body
        _, mine = await call(sam, "GET", node.url + "/api/push")
        assert mine["devices"][0]["sos"] is True
        service.gone.add("stale")

        status, raised = await call(ada, "POST", node.url + "/api/sos", json={"note": "Fell on the stairs"})
        assert status == 201, raised
        await wait_until(lambda: service.count("sam") >= 1)
        await node.app[PUSH].idle()
        sos = responder.decrypt(service.received["sam"][0][1])
        assert sos["kind"] == "sos" and sos["title"] == "SOS: Ada" and sos["body"] == "Fell on the stairs"
        assert sos["url"] == "/#sos" and service.received["sam"][0][0]["Urgency"] == "high"
        assert service.count("ben") == 0   # not on call

        # Sam answers: Ada's own device hears it, its push service says the subscription is gone (410) and the
        # node forgets it.
        status, _ = await call(sam, "POST", node.url + f"/api/sos/{raised['sos']['id']}/ack")
        assert status == 200
        await wait_until(lambda: service.count("stale") >= 1)
        await node.app[PUSH].idle()
        assert stale.decrypt(service.received["stale"][0][1])["title"] == "SOS answered (Ada)"
        _, mine = await call(ada, "GET", node.url + "/api/push")
        assert mine["devices"] == []
        _, status_body = await call(manager, "GET", node.url + "/api/push/status")
        assert status_body["push"]["gone"] == 1 and status_body["push"]["devices"] == 2
        async with manager.get(node.url + "/metrics") as resp:
            metrics = await resp.text()
        assert "nnode_webpush_gone_total 1.0" in metrics
    finally:
        await _close(manager, ada, ben, sam)
        await service.runner.cleanup()


async def test_with_the_push_service_out_of_reach_the_console_says_so(make_node):
    node = await make_node("home", push__loopback_endpoints=True)
    manager, resident = browser(), browser()
    try:
        await claim(node, manager)
        await join(node, resident, (await invite(node, manager))["code"])
        # a port nobody listens on: what a phone's push service is to a node with no internet
        service = await push_service()
        device = service.device("away")
        await service.runner.cleanup()
        status, _ = await call(resident, "POST", node.url + "/api/push/subscriptions", json=device.subscription())
        assert status == 201
        status, _ = await call(manager, "POST", node.url + "/api/alerts", json={"event": "Flood", "severity": "Severe"})
        assert status == 200

        async def offline() -> bool:
            _, body = await call(manager, "GET", node.url + "/api/push/status")
            return body["push"]["offline"]
        await wait_until(offline)
        _, body = await call(manager, "GET", node.url + "/api/push/status")
        assert body["push"]["note"] == "no internet: pushes can't be delivered, open pages still get alerts"
        assert body["push"]["failed"] == 1 and body["push"]["devices"] == 1   # kept: it is the network, not the device
        async with manager.get(node.url + "/metrics") as resp:
            assert 'nnode_webpush_failed_total{reason="unreachable"} 1.0' in await resp.text()
    finally:
        await _close(manager, resident)


async def test_subscriptions_are_checked_and_bound_to_the_resident(make_node):
    node = await make_node("home", push__max_devices=2)   # loopback endpoints not allowed: push services are https
    manager, ada, ben, stranger = browser(), browser(), browser(), browser()
    try:
        await claim(node, manager)
        await join(node, ada, (await invite(node, manager, unit="4B"))["code"])
        await join(node, ben, (await invite(node, manager, unit="5C"))["code"])
        good = Device("https://fcm.googleapis.com/fcm/send/abc123").subscription()
        url = node.url + "/api/push/subscriptions"

        status, body = await call(stranger, "POST", url, json=good)
        assert status == 401
        cases = [
            ({**good, "endpoint": "http://127.0.0.1:9/push/x"}, "https"),
            ({**good, "endpoint": "https://10.0.0.5/push/x"}, "not one of the push services"),
            ({**good, "endpoint": "https://evil.example/fcm.googleapis.com/x"}, "not one of the push services"),
            ({**good, "endpoint": "https://user:pw@fcm.googleapis.com/x"}, "no user name"),
            ({**good, "keys": {**good["keys"], "p256dh": "A" * 87}}, "keys.p256dh"),
            ({**good, "keys": {**good["keys"], "auth": "%%%"}}, "keys.auth"),
            ({**good, "min_severity": "Apocalyptic"}, "min_severity"),
            ({**good, "endpoint": "https://fcm.googleapis.com/" + "x" * 3000}, "endpoint"),
            ({**good, "extra": 1}, "extra"),
        ]
        for bad, words in cases:
            status, body = await call(ada, "POST", url, json=bad)
            assert status == 400 and words in body["error"], (bad, body)
        status, body = await call(ada, "POST", url, json=good)
        assert status == 201, body
        status, body = await call(ada, "POST", url, json={**good, "min_severity": "Extreme"})   # same device again
        assert status == 201 and body["device"]["min_severity"] == "Extreme"
        second = Device("https://updates.push.services.mozilla.com/wpush/v2/x").subscription()
        status, _ = await call(ada, "POST", url, json=second)
        assert status == 201
        status, body = await call(ada, "POST", url, json=Device("https://web.push.apple.com/QO3").subscription())
        assert status == 409 and "push.max_devices" in body["error"]
        status, _ = await call(ada, "DELETE", url, json={"endpoint": second["endpoint"]})
        assert status == 200
        # Ben cannot unsubscribe Ada's device, nor see it; Ada can.
        status, _ = await call(ben, "DELETE", url, json={"endpoint": good["endpoint"]})
        assert status == 404
        _, info = await call(ben, "GET", node.url + "/api/push")
        assert info["devices"] == []
        status, _ = await call(ada, "DELETE", url, json={"endpoint": good["endpoint"]})
        assert status == 200
        _, info = await call(ada, "GET", node.url + "/api/push")
        assert info["devices"] == []
        # the VAPID private key is the node's own: in its data folder, readable by the node's user alone
        mode = stat.S_IMODE(os.stat(node.config.node.data_dir / "vapid.pem").st_mode)
        assert mode == 0o600
        # signing out ends what the session's devices receive
        status, _ = await call(ada, "POST", url, json=good)
        assert status == 201
        assert [d.endpoint for d in await node.app[PUSH].subscriptions.recipients()] == [good["endpoint"]]
        await call(ada, "POST", node.url + "/api/logout")
        assert await node.app[PUSH].subscriptions.recipients() == []
    finally:
        await _close(manager, ada, ben, stranger)


def test_a_long_report_still_fits_a_push():
    notice = notice_for("report", {"report": {"id": 7, "category": "crime", "where": "lobby " * 50,
                                              "what": "玻璃" * 5000}}, "all")
    assert notice is not None and len(notice.payload()) <= MAX_PAYLOAD
    assert json.loads(notice.payload())["body"].startswith("玻璃")
    assert notice_for("report", {"report": {"id": 8, "what": "held"}}, "managers") is None   # held: wakes no one
