// The resident app at "/": session check, hash routing between the six sections, and the live stream that
// feeds them all. Each section lives in its own module; this file only wires them together.

import { AlertList, alertSummary } from "./alerts-view.js";
import { initCameras } from "./cameras.js";
import { $, announce, getJSON, loadSession, notify, setStatus, wireNotifyButton, wireSignOut } from "./common.js";
import { connectLive } from "./live.js";
import { initMap } from "./map.js";
import { initReports } from "./report.js";
import { initResponder } from "./responder.js";
import { initSos } from "./sos.js";
import { initTimeline } from "./timeline.js";

const VIEWS = ["alerts", "timeline", "map", "report", "cameras", "sos"];
const SIGNED_IN_ONLY = new Set(["timeline", "map", "report", "cameras", "sos"]);

async function main() {
  const alerts = new AlertList($("alerts-list"), $("alerts-status"));
  const session = await loadSession();
  const signedIn = Boolean(session.role);
  if (session.node?.name) {
    $("node-name").textContent = session.node.name;
    document.title = `${session.node.name} \u2014 Neighborhood Node`;
  }

  // Alerts are public: show them even before sign-in.
  const loadAlerts = async () => {
    try {
      const answer = await getJSON("/api/alerts");
      alerts.set(answer.alerts || []);
    } catch (error) {
      setStatus($("alerts-status"), `Could not load alerts: ${error.message}`, "error");
    }
  };
  loadAlerts();

  if (!signedIn) {
    $("signed-out").hidden = false;
    $("live-status").textContent = "signed out";
    document.body.classList.add("signed-out");
    for (const button of document.querySelectorAll("#tabs button")) {
      if (SIGNED_IN_ONLY.has(button.dataset.view)) button.hidden = true;
    }
    route(() => {}, () => "alerts");
    return;
  }

  $("who").textContent = session.role === "manager" ? "Manager" : [session.unit && `Unit ${session.unit}`, session.name]
    .filter(Boolean).join(" \u00b7 ");
  if (session.role === "manager") $("manage-link").hidden = false;
  wireSignOut($("signout-button"), "/", $("alerts-status"));
  wireNotifyButton($("notify-button"), $("notify-status"));

  const timeline = initTimeline();
  const map = initMap();
  const reports = initReports();
  const cameras = initCameras(session);
  const sos = initSos(session);
  const responder = initResponder(session, sos.isMine);
  if (responder.active) document.body.classList.add("responder");

  // Open calls at start: the resident's own for the status line, everyone's for a responder's banner.
  getJSON("/api/sos").then((answer) => {
    const calls = answer.calls || [];
    sos.load(calls);
    responder.load(async () => calls);
  }, (error) => setStatus($("sos-state"), `Could not load open calls: ${error.message}`, "error"));

  connectLive({
    alert(data) {
      const { title, severity } = alerts.upsert({ event: data.event, received: Date.now() / 1000, cap: data.cap });
      if (data.cap?.msgType === "Cancel") {
        announce(`Alert withdrawn: ${title}`);
      } else {
        const urgent = severity === "Extreme" || severity === "Severe";
        announce(`New alert, ${severity} severity: ${title}`, urgent);
        notify(`${severity} alert: ${title}`, { body: alertSummary(data.cap).info.instruction || "", tag: `alert-${data.event}` });
      }
      timeline.stale();
      map.stale();
    },
    "alert-withdrawn"(data) {
      alerts.remove(data.event);
      timeline.stale();
      map.stale();
    },
    report(data) {
      // Reports shared by nearby buildings belong to the timeline, not to this building's list.
      if (data.report?.source !== "neighborhood") reports.upsert(data.report);
      timeline.stale();
    },
    "report-moderated"() {
      reports.reload();
      timeline.stale();
    },
    "report-withdrawn"() {
      timeline.stale();
    },
    sos(data) {
      sos.onSos(data.sos);
      responder.onSos(data.sos);
      timeline.stale();
    },
    "sos-ack"(data) {
      sos.onAck(data.sos);
      responder.onAck(data.sos);
      timeline.stale();
    },
    "sos-escalated"(data) {
      sos.onEscalated(data.sos, data.stage);
      responder.onEscalated(data.sos, data.stage);
    },
    clip() {
      cameras.onClip();
    },
  }, $("live-status"));

  const sections = { timeline, map, report: reports, cameras };
  route((view) => {
    for (const [name, section] of Object.entries(sections)) {
      if (name === view) section.show();
      else section.hide?.();
    }
  }, (view) => view);
}

/**
 * Hash routing: #alerts, #timeline, #map, #report, #cameras, #sos. Unknown or forbidden hashes show alerts. Focus moves
 * to the section heading when the reader switched sections (not on first load), so screen readers follow.
 */
function route(onShow, allow) {
  const tabs = [...document.querySelectorAll("#tabs button")];
  let current = null;
  const show = (moveFocus) => {
    const wanted = location.hash.slice(1);
    // Other fragments (the skip link's #main) are in-page jumps, not a change of section.
    if (!VIEWS.includes(wanted) && current) return;
    const view = VIEWS.includes(wanted) ? allow(wanted) : "alerts";
    current = view;
    for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
    for (const tab of tabs) {
      if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    onShow(view);
    if (moveFocus) $(`${view}-title`).focus();
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      const hash = `#${tab.dataset.view}`;
      if (location.hash === hash) show(true);
      else location.hash = hash; // hashchange does the rest, and Back works
    });
  }
  window.addEventListener("hashchange", () => show(true));
  show(false);
}

main();
