"""Web Push in a real browser (Debian's Chromium through Playwright): the resident's app installs its service worker
and manifest; a push the node really sent (to a push service on loopback, decrypted with the device's keys) is
delivered to the service worker through the DevTools protocol's `ServiceWorker.deliverPushMessage`, which shows the
notification; a tap on it opens the alert.

Headless Chromium has no notification centre to tap, and the DevTools protocol has no command to click a system
notification, so the tap is a `notificationclick` event dispatched inside the service worker with the very
notification it showed (its handler is the one a real tap runs). Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

import json

from node.keys import PUSH
from tests.conftest import wait_until
from tests.people import PASSWORD, call, claim, invite
from tests.people import browser as http_client
from tests.test_browser import ARTIFACTS, PHONE, chromium, shot  # noqa: F401 (chromium is a fixture)
from tests.test_push import PushService


async def test_a_push_shows_a_notification_and_a_tap_opens_the_alert(make_node, chromium):  # noqa: F811
    from playwright.async_api import expect

    service = await PushService().start()
    node = await make_node("home", push__loopback_endpoints=True, node__name="Elm Street 12")
    errors: list[str] = []
    async with http_client() as manager:
        await claim(node, manager)
        code = (await invite(node, manager, unit="4B", name="Ada"))["code"]
        context = await chromium.new_context(**PHONE)
        try:
            await context.grant_permissions(["notifications"], origin=node.url)
            phone = await context.new_page()
            phone.on("pageerror", lambda exc: errors.append(str(exc)))
            await phone.goto(node.url + f"/join#code={code}")
            await phone.click("#join-submit")
            await phone.wait_for_url(node.url + "/")

            # Installable: the manifest names the app and its real icons, the service worker controls the page.
            manifest = await phone.evaluate("""async () => {
                const link = document.querySelector('link[rel=manifest]');
                const answer = await fetch(link.href);
                const body = await answer.json();
                const icons = await Promise.all(body.icons.map(async (icon) => {
                    const image = new Image();
                    image.src = icon.src;
                    await image.decode();
                    return [icon.sizes, image.naturalWidth, image.naturalHeight];
                }));
                return { type: answer.headers.get('content-type'), name: body.name, display: body.display, icons };
            }""")
            assert manifest["type"] == "application/manifest+json" and manifest["display"] == "standalone"
            assert ["192x192", 192, 192] in manifest["icons"] and ["512x512", 512, 512] in manifest["icons"]
            await phone.wait_for_function("() => navigator.serviceWorker.controller !== null")
            await expect(phone.locator("#push-panel")).to_be_visible()
            await phone.click("#push-panel summary")
            await shot(phone, "push-1-panel")

            # The device's subscription goes to the node from the page (the browser's own would need the
            # internet to reach its push service); the node pushes to the loopback service.
            device = service.device("phone")
            subscribed = await phone.evaluate("""async (body) => {
                const answer = await fetch('/api/push/subscriptions', {method: 'POST', body: JSON.stringify(body),
                    headers: {'Content-Type': 'application/json'}});
                return answer.status;
            }""", device.subscription(min_severity="Severe"))
            assert subscribed == 201
            status, posted = await call(manager, "POST", node.url + "/api/alerts", json={
                "event": "Gas leak", "headline": "Gas leak on Elm Street", "severity": "Extreme",
                "instruction": "Leave by the east stairs."})
            assert status == 200, posted
            await wait_until(lambda: service.count("phone") >= 1)
            payload = device.decrypt(service.received["phone"][0][1])

            # The open page shows the alert (and its own notification, same tag) first: a push delivered while the
            # live message is still on its way would be replaced by the page's notification, which the service
            # worker's getNotifications() does not list.
            await expect(phone.locator(f'#alerts-list article[data-event="{posted["event"]}"]')).to_be_visible()
            # The browser delivers the push to the service worker, which shows the notification.
            cdp = await context.new_cdp_session(phone)
            registrations: list[dict] = []
            cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
            await cdp.send("ServiceWorker.enable")
            await wait_until(lambda: any(r["scopeURL"] == node.url + "/" for r in registrations))
            registration = next(r for r in registrations if r["scopeURL"] == node.url + "/")
            await cdp.send("ServiceWorker.deliverPushMessage", {
                "origin": node.url, "registrationId": registration["registrationId"], "data": json.dumps(payload)})
            shown = """async () => (await (await navigator.serviceWorker.ready).getNotifications())
                .map((n) => ({title: n.title, body: n.body, tag: n.tag, url: n.data.url}))"""
            # Polled from here: wait_for_function takes the returned Promise itself as truthy and returns at once.
            notifications: list[dict] = []

            async def shown_yet() -> bool:
                notifications[:] = await phone.evaluate(shown)
                return bool(notifications)
            await wait_until(shown_yet)
            assert notifications == [{"title": "Extreme alert: Gas leak on Elm Street",
                                      "body": "Leave by the east stairs.", "tag": f"alert-{posted['event']}",
                                      "url": f"{node.url}/?alert={posted['event']}#alerts"}]

            # A tap on it opens the alert.
            await phone.click('#tabs button[data-view="timeline"]')
            worker = context.service_workers[0] if context.service_workers else \
                await context.wait_for_event("serviceworker")
            await worker.evaluate("""async () => {
                const [notification] = await self.registration.getNotifications();
                self.dispatchEvent(new NotificationEvent('notificationclick', {notification}));
            }""")
            await phone.wait_for_url(f"{node.url}/?alert={posted['event']}#alerts")
            card = phone.locator(f'#alerts-list article[data-event="{posted["event"]}"]')
            await expect(card).to_have_class(__import__("re").compile("card-opened"))
            await expect(card).to_be_in_viewport()
            await shot(phone, "push-2-alert-opened")

            # With the push service out of reach (no internet), the manager's console says what that means.
            await service.runner.cleanup()
            status, _ = await call(manager, "POST", node.url + "/api/alerts", json={"event": "Flood", "severity": "Severe"})
            assert status == 200
            await wait_until(lambda: node.app[PUSH].status.offline)
            console = await (await chromium.new_context(viewport={"width": 1280, "height": 900})).new_page()
            console.on("pageerror", lambda exc: errors.append(str(exc)))
            await console.goto(node.url + "/login")
            await console.fill("#login-password", PASSWORD)
            await console.click("#login-submit")
            await console.wait_for_url(node.url + "/manage")
            await expect(console.locator("#push-delivery")).to_contain_text(
                "no internet: pushes can't be delivered, open pages still get alerts")
            await console.locator("#post-alert").screenshot(path=str(ARTIFACTS / "push-3-console-offline.png"))
            await console.context.close()
            assert errors == []
        finally:
            await context.close()
            await service.runner.cleanup()
