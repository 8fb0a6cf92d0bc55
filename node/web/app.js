// The resident app at "/": session check, hash routing between the sections, and the live stream that
// feeds them all. Each section lives in its own module; this file only wires them together.

import { AlertList, alertSummary } from "./alerts-view.js";
import { initCameras } from "./cameras.js";
import { $, announce, debounce, getJSON, loadSession, notify, setStatus, wireNotifyButton, wireSignOut } from "./common.js";
import { connectLive } from "./live.js";
import { initMap } from "./map.js";
import { initPush } from "./push.js";
import { initReports } from "./report.js";
import { initResponder } from "./responder.js";
import { RequestList } from "./sharing.js";
import { initSos } from "./sos.js";
import { initTimeline } from "./timeline.js";
import "./tls.js";   // on plain http: move to the https address once this device trusts it

const VIEWS = ["alerts", "timeline", "map", "report", "cameras", "requests", "sos"];
const SIGNED_IN_ONLY = new Set(["timeline", "map", "report", "cameras", "requests", "sos"]);
// Views without a tab of their own, and the tab they belong under.
const TAB_OF = { requests: "cameras" };

/** A tapped notification opens "/?alert=ID#alerts": mark that alert's card and bring it into view. */
function showLinkedAlert() {
  const id = new URLSearchParams(location.search).get("alert");
  const card = id && document.querySelector(`#alerts-list article[data-event="${CSS.escape(id)}"]`);
  if (!card) return;
  card.classList.add("card-opened");
  card.scrollIntoView({ block: "center" });
}

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
      showLinkedAlert();
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
  initPush(session);

  const timeline = initTimeline();
  const map = initMap();
  const reports = initReports(session.limits);
  const cameras = initCameras(session);
  const sos = initSos(session);
  const responder = initResponder(session, sos.isMine);
  const requests = initRequests(session);
  if (responder.active) document.body.classList.add("responder");

  // Open calls at start: the resident's own for the status line, everyone's for a responder's banner.
  getJSON("/api/sos").then((answer) => {
    const calls = answer.calls || [];
    sos.load(calls);
    responder.load(async () => calls);
  }, (error) => setStatus($("sos-state"), `Could not load open calls: ${error.message}`, "error"));

  connectLive({
    alert(data) {
      const { title, severity } = alerts.upsert({ event: data.event, received: Date.now() / 1000, cap: data.cap, signature: data.signature });
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
    "sos-ended"(data) {
      sos.onEnded(data.sos);
      responder.onEnded(data.sos);
      timeline.stale();
    },
    "sos-escalated"(data) {
      sos.onEscalated(data.sos, data.stage);
      responder.onEscalated(data.sos, data.stage);
    },
    clip() {
      cameras.onClip();
      requests.stale(); // a new clip (an upload) may match an open request
    },
    "agency-request"() {
      requests.stale();
    },
    consent() {
      requests.stale();
    },
  }, $("live-status"));

  const sections = { timeline, map, report: reports, cameras, requests };
  route((view) => {
    for (const [name, section] of Object.entries(sections)) {
      if (name === view) section.show();
      else section.hide?.();
    }
    if (view === "cameras") requests.stale(); // the count on the Requests link
  }, (view) => view);
}

/**
 * The Requests view (agencies asking for footage of the reader's own uploads; the building cameras' for the
 * manager), and the count on its link in the Cameras view. Loaded once at start for the count, then when shown.
 */
function initRequests(session) {
  const manager = session.role === "manager";
  if (manager) {
    $("requests-who").textContent = "As the manager you answer here for the building cameras' clips, as in the "
      + "console. Residents decide about their own uploads themselves.";
  }
  const count = $("requests-count");
  const list = new RequestList($("requests-list"), $("requests-status"), {
    manager,
    onLoaded(requests) {
      const waiting = requests.filter((request) => request.status === "open"
        && (request.clips || []).some((clip) => !clip.consent)).length;
      count.textContent = waiting ? ` (${waiting} waiting for your answer)` : "";
    },
  });
  list.visible = false;
  list.load();
  let visible = false;
  const reload = debounce(() => list.load(), 500);
  return {
    show() {
      visible = true;
      list.show();
    },
    hide() {
      if (!visible) return;
      visible = false;
      list.hide();
    },
    /** A live message about requests or consents: reload (the link's count too). */
    stale() {
      reload();
    },
  };
}

/**
 * Hash routing: #alerts, #timeline, #map, #report, #cameras, #requests, #sos. Unknown or forbidden hashes show alerts. Focus moves
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
      if (tab.dataset.view === (TAB_OF[view] || view)) tab.setAttribute("aria-current", "page");
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
