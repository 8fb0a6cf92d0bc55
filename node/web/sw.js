// The service worker: shows the node's Web Push notifications while no page is open (a locked phone), and opens
// the alert when one is tapped. The node encrypts every push to this device (RFC 8291); the browser decrypts it
// before the "push" event, so event.data is the node's JSON: {title, body, tag, url, kind, severity}.

const ICON = "/static/icon-192.png";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

/** Only paths on the node itself are opened: a push can never send the reader elsewhere. */
function sameOrigin(url) {
  try {
    const target = new URL(url || "/", self.location.origin);
    return target.origin === self.location.origin ? target.href : new URL("/", self.location.origin).href;
  } catch {
    return new URL("/", self.location.origin).href;
  }
}

function notice(event) {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { body: event.data ? event.data.text() : "" };
  }
  return {
    title: String(data.title || "Neighborhood Node").slice(0, 200),
    options: {
      body: String(data.body || "").slice(0, 1000),
      tag: String(data.tag || "nnode"),
      icon: ICON,
      badge: ICON,
      renotify: true,
      requireInteraction: data.kind === "sos",
      data: { url: sameOrigin(data.url), kind: data.kind || "", severity: data.severity || "" },
    },
  };
}

self.addEventListener("push", (event) => {
  const { title, options } = notice(event);
  event.waitUntil(self.registration.showNotification(title, options));
});

/** Take a page of the app already open to the alert and bring it forward, or open one. */
async function openAlert(url) {
  const pages = await self.clients.matchAll({ type: "window" });
  const page = pages.find((p) => new URL(p.url).origin === self.location.origin);
  if (!page) return self.clients.openWindow(url);
  const shown = page.url === url ? page : await page.navigate(url);
  try {
    await (shown || page).focus();
  } catch {
    // focus() needs the tap's permission; the page is on the alert whatever happens here
  }
  return shown;
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const opened = openAlert(sameOrigin(event.notification.data && event.notification.data.url));
  try {
    event.waitUntil(opened);
  } catch {
    // an event dispatched by the tests (untrusted) cannot be extended; the page opens all the same
  }
});
