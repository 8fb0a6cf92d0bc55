// The timeline: alerts, reports and SOS calls in one time-ordered list, filtered by type on the server
// (so the limit of 100 applies to what the reader asked for, not to everything).

import { $, debounce, el, getJSON, setStatus, timeEl } from "./common.js";

const TYPE_LABELS = { alert: "Alert", report: "Report", sos: "SOS", clip: "Clip" };
const LIMIT = 100;

/** Wire the timeline section; returns {show(), stale()} for the router and the live stream. */
export function initTimeline() {
  const form = $("timeline-filters");
  const list = $("timeline-list");
  const status = $("timeline-status");
  let visible = false;
  let dirty = true;
  let generation = 0; // answers to older requests are dropped when filters change quickly

  const load = async () => {
    dirty = false;
    const types = [...form.querySelectorAll("input[name=type]:checked")].map((box) => box.value);
    if (types.length === 0) {
      list.replaceChildren();
      setStatus(status, "Choose at least one kind of item to show.");
      return;
    }
    const mine = ++generation;
    setStatus(status, "Loading…");
    list.setAttribute("aria-busy", "true");
    try {
      const answer = await getJSON(`/api/timeline?types=${types.join(",")}&limit=${LIMIT}`);
      if (mine !== generation) return;
      const items = Array.isArray(answer.items) ? answer.items : [];
      list.replaceChildren(...items.map(item));
      setStatus(status, items.length ? "" : "Nothing to show yet.");
    } catch (error) {
      if (mine === generation) setStatus(status, `Could not load the timeline: ${error.message}`, "error");
    } finally {
      if (mine === generation) list.removeAttribute("aria-busy");
    }
  };

  form.addEventListener("change", load);
  const reloadSoon = debounce(load, 1000);
  return {
    show() {
      visible = true;
      if (dirty) load();
    },
    hide() {
      visible = false;
    },
    /** Something new happened: reload now if on screen, else when next shown. */
    stale() {
      dirty = true;
      if (visible) reloadSoon();
    },
  };
}

function item(entry) {
  const type = TYPE_LABELS[entry.type] ? entry.type : "other";
  return el("li", { class: `timeline-item type-${type}`, dataset: { type: entry.type, id: String(entry.id) } },
    el("div", { class: "timeline-meta" },
      el("span", { class: `tag type-${type}` }, TYPE_LABELS[entry.type] || entry.type || "Item"),
      " ",
      timeEl(entry.time)),
    el("p", { class: "timeline-title" }, entry.title || ""),
    entry.summary ? el("p", { class: "timeline-summary prewrap" }, entry.summary) : null);
}
