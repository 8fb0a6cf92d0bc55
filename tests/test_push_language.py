"""Pushes in the resident's own language: the language an account chooses is kept on the node (POST
/api/account/language) and every push to that account's devices is written in it; a device whose account chose
none gets the language its browser asked for when it subscribed (Accept-Language), else English. An official
alert with an info in that language is pushed in it. The test decrypts each push with the device's keys."""

from __future__ import annotations

from node.keys import PUSH
from node.safety.intake import import_alerts
from tests.cap_samples import current, sample
from tests.conftest import wait_until
from tests.people import call
from tests.test_push import push_service
from tests.test_sos import _building, _close

BROOKLYN = {"node__latitude": "40.60", "node__longitude": "-73.96"}   # inside the flash flood warning's polygon


async def test_the_language_is_kept_with_the_account_and_checked(make_node):
    node = await make_node("home")
    manager, ada, ben, sam = await _building(node)
    try:
        _, before = await call(ada, "GET", node.url + "/api/session")
        assert before["language"] is None
        status, body = await call(ada, "POST", node.url + "/api/account/language", json={"language": "es"})
        assert status == 200 and body["language"] == "es", body
        _, after = await call(ada, "GET", node.url + "/api/session")
        assert after["language"] == "es"
        _, others = await call(ben, "GET", node.url + "/api/session")
        assert others["language"] is None                      # one account's choice, not the node's
        status, body = await call(ada, "POST", node.url + "/api/account/language", json={"language": "fr"})
        assert status == 400 and "language" in body["error"], body
        _, kept = await call(ada, "GET", node.url + "/api/session")
        assert kept["language"] == "es"                        # a refused choice changes nothing
        status, _ = await call(manager, "POST", node.url + "/api/account/language", json={"language": "zh"})
        assert status == 200
        _, console = await call(manager, "GET", node.url + "/api/session")
        assert console["language"] == "zh"
        status, _ = await call(ada, "POST", node.url + "/api/account/language", json={"language": None})
        assert status == 200
        _, cleared = await call(ada, "GET", node.url + "/api/session")
        assert cleared["language"] is None
    finally:
        await _close(manager, ada, ben, sam)


async def test_each_device_gets_its_push_in_its_accounts_language(make_node):
    service = await push_service()
    node = await make_node("home", push__loopback_endpoints=True, **BROOKLYN)
    manager, ada, ben, sam = await _building(node)   # Sam is on call
    try:
        status, _ = await call(ada, "POST", node.url + "/api/account/language", json={"language": "es"})
        assert status == 200
        spanish, chinese, english = service.device("ada"), service.device("ben"), service.device("sam")
        # Ada's browser says English, but her account chose Spanish; Ben chose nothing and his browser asks for
        # Chinese; Sam chose nothing and his browser sends no language.
        for session, device, accept in ((ada, spanish, "en-US"), (ben, chinese, "zh-CN,zh;q=0.9,en;q=0.5"),
                                        (sam, english, None)):
            headers = {"Accept-Language": accept} if accept else {}
            status, body = await call(session, "POST", node.url + "/api/push/subscriptions", headers=headers,
                                      json=device.subscription(min_severity="Minor", reports=True))
            assert status == 201, body

        status, gas = await call(manager, "POST", node.url + "/api/alerts",
                                 json={"event": "Gas leak", "severity": "Extreme",
                                       "instruction": "Leave by the east stairs."})
        assert status == 200, gas
        await wait_until(lambda: all(service.count(n) >= 1 for n in ("ada", "ben", "sam")))
        await node.app[PUSH].idle()
        titles = {name: device.decrypt(service.received[name][0][1])["title"]
                  for name, device in (("ada", spanish), ("ben", chinese), ("sam", english))}
        # The node's own words are translated; what the manager wrote stays as written.
        assert titles == {"ada": "Alerta extrema: Gas leak", "ben": "极端警报：Gas leak",
                          "sam": "Extreme alert: Gas leak"}

        # The NWS sends its warning in English and Spanish: Ada's push is the Spanish info.
        await import_alerts(node.engine, current(sample("nws_flash_flood_maximal.xml")))
        await wait_until(lambda: all(service.count(n) >= 2 for n in ("ada", "ben", "sam")))
        await node.app[PUSH].idle()
        flood = {name: device.decrypt(service.received[name][1][1])
                 for name, device in (("ada", spanish), ("ben", chinese), ("sam", english))}
        assert flood["ada"]["title"].startswith("Alerta grave: Aviso de Inundaciones Repentinas"), flood["ada"]
        assert flood["sam"]["title"].startswith("Severe alert: Flash Flood Warning"), flood["sam"]
        assert flood["ben"]["title"].startswith("严重警报：Flash Flood Warning"), flood["ben"]   # no Chinese info

        # Ada changes her mind on another page: the next push follows at once. Her SOS reaches Sam in English.
        status, _ = await call(ada, "POST", node.url + "/api/account/language", json={"language": "zh"})
        assert status == 200
        status, raised = await call(ada, "POST", node.url + "/api/sos", json={"note": "Fell on the stairs"})
        assert status == 201, raised
        status, _ = await call(sam, "POST", node.url + f"/api/sos/{raised['sos']['id']}/ack")
        assert status == 200
        await wait_until(lambda: service.count("ada") >= 3 and service.count("sam") >= 3)
        await node.app[PUSH].idle()
        assert english.decrypt(service.received["sam"][2][1])["title"] == "SOS: Ada"
        answered = spanish.decrypt(service.received["ada"][2][1])
        assert answered["title"] == "SOS 已有人回应（Ada）" and answered["body"] == "由 Sam 处理。", answered
    finally:
        await _close(manager, ada, ben, sam)
        await service.runner.cleanup()
