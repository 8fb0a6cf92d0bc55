// The manager console at "/manage": checks the session, loads every section, and keeps the SOS calls, the
// moderation queue, the alerts and the clips current from the same live stream the resident app uses.

import { $, debounce, getJSON, loadSession, setStatus, wireNotifyButton, wireSignOut } from "./common.js";
import { connectLive } from "./live.js";
import { initCameras } from "./manage-cameras.js";
import { initConsoleAlerts, initConsoleFeeds, initModeration, initPeers, initPostAlert } from "./manage-content.js";
import { initInvites, initResidents, initSessions } from "./manage-people.js";
import { initSharing } from "./manage-sharing.js";
import { initResponder } from "./responder.js";
import "./tls.js";   // on plain http: move to the https address once this device trusts it

/** How Web Push to residents' locked phones is going: "no internet" when the push services are out of reach. */
async function showPushDelivery() {
  const node = $("push-delivery");
  try {
    const { push } = await getJSON("/api/push/status");
    const counts = `${push.devices} device(s) subscribed; ${push.sent} push(es) delivered, ${push.failed} failed since start.`;
    setStatus(node, push.enabled ? `Locked phones: ${push.note}. ${counts}` : "Push notifications are turned off (push.enabled).",
      push.offline ? "error" : "");
  } catch (error) {
    setStatus(node, `Could not read push delivery: ${error.message}`, "error");
  }
}

async function main() {
  const session = await loadSession();
  if (session.node?.name) {
    $("node-name").textContent = session.node.name;
    document.title = `${session.node.name}: manager console`;
  }
  if (session.role !== "manager") {
    $("not-manager").hidden = false;
    $("live-status").textContent = "signed out";
    return;
  }
  $("console").hidden = false;
  wireSignOut($("signout-button"), "/login", $("sos-banner-status"));
  wireNotifyButton($("notify-button"), $("notify-status"));

  const residents = initResidents();
  const invites = initInvites();
  const sessions = initSessions();
  const moderation = initModeration();
  const alerts = initConsoleAlerts();
  const feeds = initConsoleFeeds();
  const peers = initPeers();
  const cameras = initCameras();
  initPostAlert(() => alerts.load());
  const sharing = initSharing();
  // The manager raises no SOS from the console, so no call here is "theirs" and every one rings.
  const responder = initResponder(session, () => false);

  for (const section of [residents, invites, sessions, moderation, alerts, feeds, peers, cameras]) section.load();
  showPushDelivery();
  setInterval(showPushDelivery, 30_000);
  responder.load(async () => (await getJSON("/api/sos")).calls || []);

  // Several reports can arrive together (a peer sync); reload the queue once for the batch.
  const reloadModeration = debounce(() => moderation.load(), 800);
  connectLive({
    alert(data) { alerts.upsert({ event: data.event, received: Date.now() / 1000, cap: data.cap, signature: data.signature }); },
    "alert-withdrawn"(data) { alerts.remove(data.event); },
    report() { reloadModeration(); },
    "report-moderated"() { reloadModeration(); },
    sos(data) { responder.onSos(data.sos); },
    "sos-ack"(data) { responder.onAck(data.sos); },
    "sos-ended"(data) { responder.onEnded(data.sos); },
    "sos-escalated"(data) { responder.onEscalated(data.sos, data.stage); },
    clip() { cameras.onClip(); },
    ...sharing,
  }, $("live-status"));
}

main();
