// CAP 1.2 alerts (as JSON) rendered as cards, most severe first, in the reader's language when the alert has it.

import { el, timeEl, toDate } from "./common.js";
import { currentLanguage } from "./i18n.js";

const SEVERITY_RANK = { Extreme: 0, Severe: 1, Moderate: 2, Minor: 3, Unknown: 4 };

/**
 * The info block to show: an exact language match (en-US), then the same primary language (en), then English,
 * then the first. CAP says a missing language means en-US. The language chosen on this device comes first.
 */
export function pickInfo(infos, languages = [currentLanguage(),
  ...(navigator.languages?.length ? navigator.languages : [navigator.language])]) {
  if (!Array.isArray(infos) || infos.length === 0) return null;
  const langOf = (info) => String(info.language || "en-US").toLowerCase();
  const wanted = languages.filter(Boolean).map((lang) => lang.toLowerCase());
  for (const lang of wanted) {
    const exact = infos.find((info) => langOf(info) === lang);
    if (exact) return exact;
  }
  for (const lang of wanted) {
    const primary = lang.split("-")[0];
    const close = infos.find((info) => langOf(info).split("-")[0] === primary);
    if (close) return close;
  }
  return infos.find((info) => langOf(info).startsWith("en")) || infos[0];
}

/** What a list or the map needs to know of one alert: title and severity in the chosen language. */
export function alertSummary(cap) {
  const info = pickInfo(cap?.info) || {};
  return {
    info,
    title: info.headline || info.event || cap?.identifier || "Alert",
    severity: SEVERITY_RANK[info.severity] === undefined ? "Unknown" : info.severity,
  };
}

// The outcome of the alert's XML-DSig signature check when the node took it from its feed (none: posted as JSON).
const SIGNATURE = {
  valid: "Verified with the publisher's certificate",
  unsigned: "Not signed by the publisher",
  "no certificate configured": "Signed, not checked (no certificate configured for this feed)",
  invalid: "Signature does not verify",
};

const refKey = (sender, identifier, sent) => `${sender}\u0000${identifier}\u0000${sent}`;

/** The alerts list: keeps {event, received, cap} items, sorted, and re-renders the few cards that change. */
export class AlertList {
  constructor(listNode, statusNode) {
    this.listNode = listNode;
    this.statusNode = statusNode;
    this.items = new Map(); // event id -> {event, received, cap}
  }

  set(items) {
    this.items = new Map(items.map((item) => [String(item.event), item]));
    this.render();
  }

  /** Add or replace one alert; an Update or Cancel also drops the alerts it references. Returns the summary. */
  upsert(item) {
    const cap = item.cap || {};
    const replaced = new Set((cap.references || []).map((r) => refKey(r.sender, r.identifier, r.sent)));
    for (const [id, old] of this.items) {
      if (replaced.has(refKey(old.cap?.sender, old.cap?.identifier, old.cap?.sent))) this.items.delete(id);
    }
    if (cap.msgType === "Cancel") this.items.delete(String(item.event));
    else this.items.set(String(item.event), item);
    this.render();
    return alertSummary(cap);
  }

  remove(eventId) {
    if (this.items.delete(String(eventId))) this.render();
  }

  get size() {
    return this.items.size;
  }

  render() {
    const sorted = [...this.items.values()].sort((a, b) => {
      const rank = SEVERITY_RANK[alertSummary(a.cap).severity] - SEVERITY_RANK[alertSummary(b.cap).severity];
      return rank || (toDate(b.cap?.sent)?.getTime() || 0) - (toDate(a.cap?.sent)?.getTime() || 0);
    });
    this.listNode.replaceChildren(...sorted.map(alertCard));
    if (this.statusNode) {
      this.statusNode.textContent = sorted.length ? "" : "No alerts in force here right now.";
    }
  }
}

/** One alert as <article data-event="ID">. Severity is a word in a badge, never colour alone. */
export function alertCard(item) {
  const cap = item.cap || {};
  const { info, title, severity } = alertSummary(cap);
  const sev = severity.toLowerCase();
  const notes = [];
  if (cap.status && cap.status !== "Actual") notes.push(el("span", { class: "tag tag-test" }, cap.status));
  if (cap.msgType === "Update") notes.push(el("span", { class: "tag" }, "Updated"));
  const areas = (info.area || []).map((area) => area.areaDesc).filter(Boolean);
  const starts = toDate(info.onset || info.effective);
  const facts = [
    ["Urgency", info.urgency],
    ["Certainty", info.certainty],
    ["From", info.senderName || cap.sender],
    ["Sent", cap.sent ? timeEl(cap.sent) : null],
    ["Starts", starts && starts > new Date() ? timeEl(starts) : null],
    ["Until", info.expires ? timeEl(info.expires) : null],
    ["Area", areas.length ? areas.join("; ") : null],
    ["Signature", SIGNATURE[item.signature] || null],
  ].filter(([, value]) => value);
  return el("article", { class: `card alert sev-${sev}`, dataset: { event: String(item.event) } },
    el("header", { class: "card-head" },
      el("span", { class: `badge sev-${sev}` }, el("span", { "aria-hidden": "true" }, severityIcon(severity)), ` ${severity}`),
      el("span", { class: "visually-hidden" }, " severity. "),
      notes),
    el("h3", { class: "alert-title", translate: "no" }, title),
    info.event && info.event !== title ? el("p", { class: "alert-event", translate: "no" }, info.event) : null,
    info.description ? el("p", { class: "prewrap", translate: "no" }, info.description) : null,
    info.instruction
      ? el("div", { class: "instruction" }, el("h4", {}, "What to do"), el("p", { class: "prewrap", translate: "no" }, info.instruction))
      : null,
    el("dl", { class: "facts" }, facts.map(([label, value]) => [el("dt", {}, label), el("dd", {}, value)])));
}

// A shape per level as well as a colour, for readers who cannot tell the badge colours apart.
function severityIcon(severity) {
  return { Extreme: "\u25B2\u25B2", Severe: "\u25B2", Moderate: "\u25C6", Minor: "\u25CF" }[severity] || "\u25CB";
}
