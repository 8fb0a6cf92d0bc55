// "Alerts on this phone": registers the service worker (sw.js), subscribes this device to the node's Web Push
// with the reader's choices, and unsubscribes it. Needs a secure context (the node's https address, or the
// node's own screen); elsewhere the panel says why it cannot work.

import { $, getJSON, postJSON, sendJSON, setStatus } from "./common.js";

/** The node's VAPID key as the bytes PushManager.subscribe wants. */
function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

/** Register the service worker (also used by the tests); resolves to its registration, or null where unsupported. */
export async function registerWorker() {
  if (!("serviceWorker" in navigator)) return null;
  await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  return navigator.serviceWorker.ready;
}

function choices() {
  return {
    min_severity: $("push-severity").value,
    alerts: $("push-alerts").checked,
    reports: $("push-reports").checked,
  };
}

function show(device) {
  if (!device) return;
  $("push-severity").value = device.min_severity;
  $("push-alerts").checked = device.alerts;
  $("push-reports").checked = device.reports;
}

/** Wire the panel for a signed-in reader. */
export function initPush(session) {
  const panel = $("push-panel");
  const status = $("push-status");
  panel.hidden = false;
  $("push-sos-note").hidden = !(session.role === "manager" || session.on_call);
  if (!window.isSecureContext || !("serviceWorker" in navigator) || !("PushManager" in window)) {
    setStatus(status, window.isSecureContext
      ? "This browser cannot receive alerts while the page is closed; open the app to see them."
      : "Alerts on a locked phone need the node's secure (https) address; open pages still get every alert.");
    $("push-on").disabled = true;
    return;
  }
  let info = null;
  const subscription = async () => (await navigator.serviceWorker.ready).pushManager.getSubscription();
  const refresh = async () => {
    info = await getJSON("/api/push");
    const current = await subscription();
    const device = current && info.devices.find((d) => d.endpoint === current.endpoint);
    show(device);
    $("push-on").textContent = device ? "Save" : "Turn on";
    $("push-off").hidden = !device;
    if (!info.enabled) {
      $("push-on").disabled = true;
      setStatus(status, "The building's node has push notifications turned off.");
    } else if (device) {
      setStatus(status, "On: this device is woken by what you chose.", "ok");
    }
  };
  registerWorker().then(refresh).catch((error) => setStatus(status, `Could not set up: ${error.message}`, "error"));

  $("push-on").addEventListener("click", async () => {
    try {
      if (Notification.permission !== "granted" && (await Notification.requestPermission()) !== "granted") {
        setStatus(status, "Allow notifications for this site in the browser to get alerts while it is closed.",
          "error");
        return;
      }
      const registration = await navigator.serviceWorker.ready;
      const current = await registration.pushManager.getSubscription()
        || await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(info.public_key) });
      await postJSON("/api/push/subscriptions", { ...current.toJSON(), ...choices() });
      await refresh();
    } catch (error) {
      setStatus(status, `Could not turn on alerts for this device: ${error.message}`, "error");
    }
  });
  $("push-off").addEventListener("click", async () => {
    try {
      const current = await subscription();
      if (current) {
        await sendJSON("DELETE", "/api/push/subscriptions", { endpoint: current.endpoint });
        await current.unsubscribe();
      }
      await refresh();
      setStatus(status, "Off: this device is no longer woken; open pages still get every alert.");
    } catch (error) {
      setStatus(status, `Could not turn off: ${error.message}`, "error");
    }
  });
}
