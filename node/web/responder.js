// Responder mode, shared by the resident app (on-call residents) and the manager console: a banner for each
// unanswered SOS, a repeated tone until someone acknowledges or this device dismisses it, and the list of open
// calls with Acknowledge and Resolve buttons. A call that ends (resolved here or elsewhere, or cancelled by its
// caller) leaves the list and the banner on every open page.
//
// Browsers start audio only after the person has touched the page, so the AudioContext is unlocked on the first
// tap or key press; until then the banner says so (the banner and the notification still work without sound).

import { $, announce, el, formatClock, notify, postJSON, setStatus, timeEl, toDate } from "./common.js";

const BEEP_EVERY_MS = 1500;

/** A two-tone beep repeated with WebAudio oscillators; no audio files. */
class Alarm {
  constructor(onNeedsTap) {
    this.ctx = null;
    this.timer = null;
    this.onNeedsTap = onNeedsTap;
    const unlock = () => this.unlock();
    document.addEventListener("pointerdown", unlock, { capture: true });
    document.addEventListener("keydown", unlock, { capture: true });
  }

  unlock() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!this.ctx) this.ctx = new Context();
    if (this.ctx.state === "suspended") this.ctx.resume().then(() => this.onNeedsTap(false), () => {});
  }

  start() {
    if (this.timer) return;
    this.unlock();
    this.beep();
    this.timer = setInterval(() => this.beep(), BEEP_EVERY_MS);
    if (navigator.vibrate) navigator.vibrate([400, 200, 400, 200, 400]);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.onNeedsTap(false);
  }

  beep() {
    const ctx = this.ctx;
    if (!ctx || ctx.state !== "running") {
      this.onNeedsTap(Boolean(ctx || window.AudioContext || window.webkitAudioContext));
      return;
    }
    this.onNeedsTap(false);
    const t = ctx.currentTime;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.setValueAtTime(880, t);
    osc.frequency.setValueAtTime(660, t + 0.3);
    // Short ramps avoid clicks; the level is loud enough to wake someone without clipping.
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.25, t + 0.02);
    gain.gain.setValueAtTime(0.25, t + 0.58);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.6);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t);
    osc.stop(t + 0.62);
  }
}

/**
 * Set up responder mode. `isMine(sos)` tells calls this person raised (they never ring for themselves).
 * Returns handlers for the live stream and load() for the open calls at start; `active` is false for people who
 * are neither on call nor the manager, and then everything is a no-op.
 */
export function initResponder(session, isMine) {
  const active = Boolean(session.on_call) || session.role === "manager";
  const calls = new Map();      // id -> sos, open calls this responder may acknowledge
  const dismissed = new Set();  // ids silenced on this device only
  const banner = $("sos-banner");
  const listWrap = document.getElementById("sos-calls-wrap");
  const list = document.getElementById("sos-calls");
  const soundHint = $("sos-banner-sound");
  const endedNote = document.getElementById("sos-ended-note");
  // Only responders ever ring; everyone else should not even get an AudioContext.
  const alarm = active ? new Alarm((needed) => { soundHint.hidden = !needed; }) : null;
  let shown = null; // id in the banner

  const waiting = () => [...calls.values()]
    .filter((sos) => !sos.acked_by && !dismissed.has(String(sos.id)))
    .sort((a, b) => (toDate(a.created)?.getTime() || 0) - (toDate(b.created)?.getTime() || 0));

  const render = () => {
    const queue = waiting();
    const first = queue[0];
    if (first) {
      const fresh = String(first.id) !== shown;
      shown = String(first.id);
      banner.hidden = false;
      $("sos-banner-who").textContent = who(first);
      $("sos-banner-note").textContent = first.note ? `\u201c${first.note}\u201d` : "No note.";
      $("sos-banner-time").replaceChildren("Raised at ", timeEl(first.created, formatClock));
      $("sos-banner-more").textContent = queue.length > 1 ? `${queue.length - 1} more open call(s) below.` : "";
      if (fresh) setStatus($("sos-banner-status"), "");
      alarm?.start();
    } else {
      shown = null;
      banner.hidden = true;
      alarm?.stop();
    }
    if (list) {
      if (listWrap) listWrap.hidden = calls.size === 0;
      // A resolution being typed survives the list being redrawn by another call's news.
      const typed = new Map([...list.querySelectorAll(".sos-resolution")].map((area) => [area.id, area.value]));
      list.replaceChildren(...[...calls.values()].map(callCard));
      for (const [id, value] of typed) {
        const area = document.getElementById(id);
        if (area) area.value = value;
      }
      if (calls.size === 0) list.append(el("p", { class: "muted" }, "No open calls."));
    }
  };

  const acknowledge = async (id, statusNode) => {
    setStatus(statusNode, "Acknowledging…");
    try {
      const answer = await postJSON(`/api/sos/${encodeURIComponent(id)}/ack`);
      const updated = answer.sos || { ...calls.get(String(id)), acked_by: session.name || "you", acked_at: Date.now() / 1000 };
      calls.set(String(id), updated);
      announce(`You acknowledged the call from ${who(updated)}.`);
      render();
      // The focused button may have just disappeared with the banner or its card; keep keyboard users in the page.
      if (document.activeElement === document.body) document.getElementById("main")?.focus();
    } catch (error) {
      setStatus(statusNode, `Could not acknowledge: ${error.message}`, "error");
    }
  };

  const resolve = async (id, note, release, statusNode, button) => {
    if (!note.value.trim()) {
      setStatus(statusNode, "Say how the call was resolved (a few words are enough).", "error");
      note.focus();
      return;
    }
    button.disabled = true;
    setStatus(statusNode, "Resolving…");
    try {
      const answer = await postJSON(`/api/sos/${encodeURIComponent(id)}/resolve`,
        { note: note.value.trim(), release_hold: Boolean(release?.checked) });
      end(answer.sos || { id, state: "resolved", ended_by: "you" });
      if (document.activeElement === document.body) document.getElementById("main")?.focus();
    } catch (error) {
      setStatus(statusNode, `Could not resolve: ${error.message}`, "error");
      button.disabled = false;
    }
  };

  const resolveForm = (sos, status) => {
    const id = String(sos.id);
    const note = el("textarea", { id: `sos-resolution-${id}`, class: "sos-resolution", rows: "2", maxlength: "500" });
    const manager = session.role === "manager";
    const release = manager && sos.hold && !sos.hold.released
      ? el("input", { type: "checkbox", id: `sos-release-${id}`, class: "sos-release" }) : null;
    const button = el("button", { type: "button", class: "button-secondary sos-resolve", dataset: { id } },
      "Resolve", el("span", { class: "visually-hidden" }, ` the call from ${who(sos)}`));
    button.addEventListener("click", () => resolve(sos.id, note, release, status, button));
    return el("div", { class: "sos-resolve-form" },
      el("label", { for: note.id }, "How was it resolved?"), note,
      release ? el("span", { class: "check" }, release,
        el("label", { for: release.id }, "Also release the held camera footage")) : null,
      button);
  };

  const callCard = (sos) => {
    const status = el("p", { class: "form-status", role: "status" });
    return el("article", { class: `card sos-call${sos.acked_by ? " is-acked" : ""}`, dataset: { id: String(sos.id) } },
      el("h3", {}, who(sos)),
      sos.note ? el("p", { class: "prewrap" }, sos.note) : null,
      el("p", {}, "Raised at ", timeEl(sos.created, formatClock)),
      sos.acked_by
        ? el("p", { class: "status-ok" }, `Acknowledged by ${sos.acked_by}`, sos.acked_at ? [" at ", timeEl(sos.acked_at, formatClock)] : "")
        : el("button", { type: "button", class: "button-danger sos-ack", dataset: { id: String(sos.id) },
          onclick: () => acknowledge(sos.id, status) }, "Acknowledge", el("span", { class: "visually-hidden" }, ` ${who(sos)}`)),
      sos.hold ? el("p", { class: "hint sos-hold" }, sos.hold.why) : null,
      resolveForm(sos, status),
      status);
  };

  // A call ended (here, on another page, or by its caller): it leaves the banner and the list.
  const end = (sos) => {
    if (!active || !sos || !calls.has(String(sos.id))) return;
    calls.delete(String(sos.id));
    dismissed.delete(String(sos.id));
    const how = sos.state === "cancelled"
      ? `The SOS from ${who(sos)} was cancelled by the caller: a false alarm.`
      : `The SOS from ${who(sos)} was resolved by ${sos.ended_by || "a responder"}.`;
    announce(how);
    if (endedNote) setStatus(endedNote, how, "ok");
    render();
  };

  if (active) {
    const ackButton = $("sos-ack-button");
    ackButton.addEventListener("click", async () => {
      if (!shown || ackButton.disabled) return;
      ackButton.disabled = true; // one acknowledgement per press, however impatient the tapping
      try {
        await acknowledge(shown, $("sos-banner-status"));
      } finally {
        ackButton.disabled = false;
      }
    });
    $("sos-dismiss-button").addEventListener("click", () => {
      if (shown) dismissed.add(shown);
      render();
    });
  }

  const add = (sos, urgentText) => {
    if (!active || !sos || isMine(sos)) return;
    const known = calls.has(String(sos.id));
    calls.set(String(sos.id), { ...calls.get(String(sos.id)), ...sos });
    if (!known && endedNote) setStatus(endedNote, ""); // the news of an earlier call is old now
    if (!known || urgentText) {
      dismissed.delete(String(sos.id)); // a new call or an escalation rings again even if dismissed before
      announce(urgentText || `SOS from ${who(sos)}${sos.note ? `: ${sos.note}` : ""}`, true);
      notify(`SOS: ${who(sos)}`, { body: sos.note || "A neighbor asked for help.", tag: `sos-${sos.id}`, requireInteraction: true });
    }
    render();
  };

  return {
    active,
    async load(getCalls) {
      if (!active) return;
      try {
        for (const sos of await getCalls()) if (!isMine(sos)) calls.set(String(sos.id), sos);
      } catch (error) {
        if (list) list.replaceChildren(el("p", { class: "status-error" }, `Could not load open calls: ${error.message}`));
        return;
      }
      render();
    },
    onSos(sos) { add(sos); },
    onEscalated(sos) {
      if (calls.has(String(sos?.id)) && !calls.get(String(sos.id)).acked_by) {
        add(sos, `Still no answer to the SOS from ${who(sos)}. It was escalated.`);
      } else {
        add(sos);
      }
    },
    onEnded(sos) { end(sos); },
    onAck(sos) {
      if (!active || !sos || !calls.has(String(sos.id))) return;
      calls.set(String(sos.id), { ...calls.get(String(sos.id)), ...sos });
      if (String(sos.id) === shown) announce(`${who(sos)}: acknowledged by ${sos.acked_by || "a responder"}.`);
      render();
    },
  };
}

/** "Unit 4B — Ana" (whatever of the two the node sent). */
export function who(sos) {
  const parts = [sos.unit ? `Unit ${sos.unit}` : "", sos.name || ""].filter(Boolean);
  return parts.join(" \u2014 ") || "A neighbor";
}
