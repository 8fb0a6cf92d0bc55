// Manager console, content: the moderation queue, posting an alert, the alerts in force, the official feeds' status,
// and peer nodes.

import { AlertList } from "./alerts-view.js";
import { $, announce, el, getJSON, postJSON, reportArticle, setStatus, timeEl } from "./common.js";
import { actionButton, fillTable } from "./manage-people.js";

// Which moderation buttons a report gets, by its status.
const ACTIONS = {
  building: ["share", "hide"],
  shared: ["hide"],
  hidden: ["restore"],
};
const ACTION_LABELS = { share: "Share with the neighborhood", hide: "Hide", restore: "Restore" };
const ACTION_DONE = { share: "Shared with the neighborhood", hide: "Hidden", restore: "Restored" };

/** Moderation: every report, the unreviewed queue first (the node orders them), with share/hide/restore. */
export function initModeration() {
  const list = $("moderation-list");
  const status = $("moderation-status");

  const load = async () => {
    try {
      const { reports = [] } = await getJSON("/api/reports");
      const queued = reports.filter((r) => r.queue).length;
      list.replaceChildren(...reports.map(card));
      setStatus(status, reports.length
        ? `${queued} report${queued === 1 ? "" : "s"} waiting for review, ${reports.length} in all.`
        : "No reports yet.");
    } catch (error) {
      setStatus(status, `Could not load reports: ${error.message}`, "error");
    }
  };

  const card = (report) => {
    const id = String(report.id);
    const reporter = report.reporter
      ? [report.reporter.unit && `unit ${report.reporter.unit}`, report.reporter.name].filter(Boolean).join(", ")
      : "";
    // A held report waits for one of three decisions: into the building, out to the neighborhood, or hidden.
    const actions = report.held ? ["restore", "share", "hide"] : (ACTIONS[report.status] || ["share", "hide", "restore"]);
    const buttons = actions.map((action) => actionButton(
      report.held && action === "restore" ? "Show to the building" : ACTION_LABELS[action], `report ${id}`,
      async () => {
        await postJSON(`/api/reports/${encodeURIComponent(id)}/${action}`);
        await load(); // first: load() resets the status line
        setStatus(status, `${ACTION_DONE[action]}: report ${id}.`, "ok");
        announce(`${ACTION_DONE[action]}: report ${id}.`);
      }, status,
      { class: `button-small${action === "hide" ? " button-danger" : action === "restore" ? " button-secondary" : ""}`,
        dataset: { action, id } }));
    const article = reportArticle(report, [
      reporter ? el("p", { class: "muted" }, `Reported by ${reporter}`) : null,
      el("div", { class: "actions" }, buttons),
    ]);
    if (report.queue) article.querySelector(".card-head").prepend(el("span", { class: "tag tag-queue" }, "Needs review"));
    return article;
  };

  return { load };
}

/** The "Post an alert" form; the node signs it as a CAP alert and the stream brings it back to every screen. */
export function initPostAlert(onPosted) {
  const form = $("alert-form");
  const submit = $("alert-submit");
  const status = $("alert-status");
  const value = (id) => $(id).value.trim();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const hours = Number(value("alert-expires"));
    const radius = Number(value("alert-radius"));
    if (!Number.isInteger(hours) || hours < 1 || hours > 72) {
      setStatus(status, "Expires in: a whole number of hours from 1 to 72.", "error");
      $("alert-expires").focus();
      return;
    }
    if (!(radius > 0)) {
      setStatus(status, "Radius: a distance in km greater than 0.", "error");
      $("alert-radius").focus();
      return;
    }
    submit.disabled = true;
    setStatus(status, "Posting…");
    try {
      await postJSON("/api/alerts", {
        event: value("alert-event"),
        headline: value("alert-headline"),
        description: value("alert-description"),
        instruction: value("alert-instruction"),
        severity: value("alert-severity"),
        urgency: value("alert-urgency"),
        certainty: value("alert-certainty"),
        category: value("alert-category"),
        expires_hours: hours,
        area_desc: value("alert-area"),
        radius_km: radius,
      });
      setStatus(status, "Alert posted. Residents see it now.", "ok");
      form.reset();
      onPosted();
    } catch (error) {
      setStatus(status, error.message, "error");
    } finally {
      submit.disabled = false;
    }
  });
}

/** The alerts in force, as residents see them. */
export function initConsoleAlerts() {
  const alerts = new AlertList($("console-alerts-list"), $("console-alerts-status"));
  const load = async () => {
    try {
      const answer = await getJSON("/api/alerts");
      alerts.set(answer.alerts || []);
    } catch (error) {
      setStatus($("console-alerts-status"), `Could not load alerts: ${error.message}`, "error");
    }
  };
  return { load, upsert: (item) => alerts.upsert(item), remove: (id) => alerts.remove(id) };
}

/** One official feed's last poll, as /api/feeds (and `nnode feeds`) report it. */
export function feedCard(feed) {
  const last = feed.last;
  let outcome;
  if (!feed.last_poll) outcome = "Not polled yet.";
  else if (feed.ok === false) outcome = `FAILED (HTTP ${feed.http_status ?? "-"}, ${feed.failures} failures so far): ${feed.error}`;
  else if (last?.not_modified) outcome = `HTTP ${feed.http_status}: not modified since the last poll.`;
  else if (last) {
    outcome = `HTTP ${feed.http_status}, ${last.shape || "?"}: ${last.entries} entries, ${last.found} alerts found, ` +
      `${last.published} published, ${last.known} already held, ${last.skipped.length} skipped.`;
    if (last.found === 0 && last.entries) outcome += " Every entry was skipped.";
  } else outcome = "";
  const skipped = (last?.skipped || []).map((item) =>
    el("li", {}, el("strong", {}, item.alert || item.entry || "entry"), `: ${item.reason}`));
  return el("article", { class: `card feed${feed.ok === false ? " feed-failed" : ""}`, dataset: { url: feed.url } },
    el("h4", { class: "feed-url" }, feed.url),
    el("p", {}, feed.last_poll ? ["Last poll ", timeEl(new Date(feed.last_poll * 1000)), ". "] : null, outcome),
    skipped.length ? el("ul", { class: "feed-skipped" }, skipped) : null);
}

/** The official feeds' status, reloaded every minute (a poll runs every alerts.poll_interval seconds). */
export function initConsoleFeeds() {
  const list = $("console-feeds-list");
  const load = async () => {
    try {
      const feeds = (await getJSON("/api/feeds")).feeds || [];
      list.replaceChildren(...feeds.map(feedCard));
      setStatus($("console-feeds-status"), feeds.length ? "" : "No official feeds configured (alerts.feeds).");
    } catch (error) {
      setStatus($("console-feeds-status"), `Could not load the feeds: ${error.message}`, "error");
    }
  };
  setInterval(load, 60_000);
  return { load };
}

/** Peers: nearby nodes found on the network or added by hand; they sync only once approved. */
export function initPeers() {
  const body = $("peers-body");
  const status = $("peers-status");

  const load = async () => {
    try {
      const { peers = [] } = await getJSON("/api/peers");
      fillTable(body, peers.map(row), 7, "No peers found yet.");
      setStatus(status, "");
    } catch (error) {
      setStatus(status, `Could not load peers: ${error.message}`, "error");
    }
  };

  const row = (peer) => {
    const key = String(peer.key || "");
    return el("tr", { dataset: { key } },
      el("td", {}, peer.name || "(unnamed)"),
      el("td", {}, el("span", { class: "key", title: key }, key.length > 16 ? `${key.slice(0, 16)}\u2026` : key)),
      el("td", { class: "invite-link" }, peer.url || ""),
      el("td", { class: `state-${peer.state}` }, peer.state || ""),
      el("td", {}, peer.source || ""),
      el("td", {}, peer.last_sync ? timeEl(peer.last_sync) : "never",
        peer.last_error ? el("p", { class: "status-error" }, peer.last_error) : null,
        // audit-log heads of this peer refused here: its history may have been rewritten or cut
        peer.audit_conflict ? el("p", { class: "status-error", dataset: { testid: "audit-conflict" } },
          `Audit log: ${peer.audit_conflict.refused} head(s) refused, the last because ${peer.audit_conflict.reason}`)
          : null),
      el("td", {}, peer.state === "pending"
        ? actionButton("Approve", peer.name || key.slice(0, 16), async () => {
          await postJSON(`/api/peers/${encodeURIComponent(key)}/approve`);
          await load(); // first: load() resets the status line
          setStatus(status, `Approved ${peer.name || "the peer"}; it syncs from now on.`, "ok");
        }, status, { class: "button-small", dataset: { action: "approve", key } })
        : ""));
  };

  return { load };
}
