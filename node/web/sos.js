// The resident's SOS: one big button, a confirm step, and the state of the call afterwards.
//
// The confirm step must be quick but not hit by accident: the first press swaps the big button for a Cancel button
// in the same place and puts the real "send" button below it, so a double tap lands on Cancel. Keyboard focus
// goes to Cancel too, so a held-down Enter key cannot send either. The step undoes itself after a while.

import { $, announce, formatClock, postJSON, setStatus, toDate } from "./common.js";

const CONFIRM_TIMEOUT_MS = 15_000;
const MINE_KEY = "nnode.my-sos"; // ids of calls raised from this browser, to tell them apart from others'

function rememberedIds() {
  try {
    return new Set(JSON.parse(sessionStorage.getItem(MINE_KEY) || "[]").map(String));
  } catch {
    return new Set();
  }
}

/** Wire the SOS section; returns {isMine, onSos, onAck, onEscalated, onEnded, load} for the app. */
export function initSos(session) {
  const start = $("sos-start");
  const button = $("sos-button");
  const confirmStep = $("sos-confirm-step");
  const confirm = $("sos-confirm");
  const cancel = $("sos-cancel");
  const note = $("sos-note");
  const state = $("sos-state");
  const mineBox = $("sos-mine");
  const falseAlarm = $("sos-false-alarm");
  const mineStatus = $("sos-mine-status");
  const responder = Boolean(session.on_call) || session.role === "manager";
  const mine = rememberedIds();
  let current = null; // this person's latest open call
  let timer = null;

  // The emergency number comes from the node's settings (911 unless the manager changed it).
  const number = String(session.node?.emergency_number || "911");
  const dial = number.replace(/[^0-9+*#]/g, "");
  $("sos-not-911").textContent = `This does not call ${number}.`;
  const call = $("sos-call");
  call.textContent = `Call ${number}`;
  if (dial) call.href = `tel:${dial}`;

  const isMine = (sos) => {
    if (!sos) return false;
    if (mine.has(String(sos.id))) return true;
    // Someone who is not a responder receives only their own calls.
    if (!responder) return true;
    if (session.resident_id != null && sos.resident_id != null) return String(sos.resident_id) === String(session.resident_id);
    return session.role === "resident" && Boolean(session.unit) && sos.unit === session.unit && sos.name === (session.name || sos.name);
  };

  const showStart = () => {
    clearTimeout(timer);
    confirmStep.hidden = true;
    start.hidden = false;
  };
  const askConfirm = () => {
    start.hidden = true;
    confirmStep.hidden = false;
    cancel.focus();
    clearTimeout(timer);
    timer = setTimeout(showStart, CONFIRM_TIMEOUT_MS);
  };
  const ended = (sos) => sos?.state === "resolved" || sos?.state === "cancelled";
  const render = () => {
    state.classList.remove("status-ok", "status-error");
    mineBox.hidden = !current || ended(current);
    if (!current) return;
    const at = formatClock(current.created);
    if (current.state === "cancelled") {
      setStatus(state, `Your SOS from ${at} was cancelled as a false alarm. Responders were told.`, "ok");
    } else if (current.state === "resolved") {
      const note = current.resolution ? `: \u201c${current.resolution}\u201d` : ".";
      setStatus(state, `Your SOS from ${at} was resolved by ${current.ended_by}${note}`, "ok");
    } else if (current.acked_by) {
      const when = current.acked_at ? ` at ${formatClock(current.acked_at)}` : "";
      setStatus(state, `Help requested at ${at}. Acknowledged by ${current.acked_by}${when}.`, "ok");
    } else if (current.escalation) {
      setStatus(state, `Help requested at ${at}; waiting for a responder. ${current.escalation}`);
    } else {
      setStatus(state, `Help requested at ${at}; waiting for a responder.`);
    }
  };

  button.addEventListener("click", askConfirm);
  cancel.addEventListener("click", () => {
    showStart();
    button.focus();
  });
  confirm.addEventListener("click", async () => {
    clearTimeout(timer);
    confirm.disabled = true;
    setStatus(state, "Sending…");
    try {
      const answer = await postJSON("/api/sos", { note: note.value.trim() });
      const sos = answer.sos || { id: "?", created: Date.now() / 1000 };
      mine.add(String(sos.id));
      try {
        sessionStorage.setItem(MINE_KEY, JSON.stringify([...mine]));
      } catch {
        // Private browsing may refuse storage; only the "is it mine" guess after a reload suffers.
      }
      current = { ...sos, created: sos.created ?? Date.now() / 1000 };
      note.value = "";
      confirmStep.hidden = true;
      start.hidden = true; // a second call while the first is open helps nobody; it returns once acknowledged
      render();
      state.focus();
    } catch (error) {
      setStatus(state, `The SOS was not sent: ${error.message}. Call ${number} if you are in danger.`, "error");
      showStart();
    } finally {
      confirm.disabled = false;
    }
  });

  falseAlarm.addEventListener("click", async () => {
    if (!current || ended(current) || falseAlarm.disabled) return;
    falseAlarm.disabled = true;
    setStatus(mineStatus, "Cancelling…");
    try {
      const answer = await postJSON(`/api/sos/${encodeURIComponent(current.id)}/cancel`);
      setStatus(mineStatus, "");
      update(answer.sos);
      state.focus();
    } catch (error) {
      setStatus(mineStatus, `Could not cancel: ${error.message}`, "error");
    } finally {
      falseAlarm.disabled = false;
    }
  });

  const update = (sos, extra = {}) => {
    if (!sos || !isMine(sos)) return false;
    if (current && String(current.id) !== String(sos.id)
        && (toDate(sos.created)?.getTime() || 0) < (toDate(current.created)?.getTime() || 0)) return true;
    current = { ...(current && String(current.id) === String(sos.id) ? current : {}), ...sos, ...extra };
    if (current.acked_by || ended(current)) showStart();
    else start.hidden = true;
    render();
    return true;
  };

  return {
    isMine,
    /** Open calls at start: residents get their own, responders everyone's (we pick ours out). */
    load(calls) {
      const own = calls.filter(isMine)
        .sort((a, b) => (toDate(a.created)?.getTime() || 0) - (toDate(b.created)?.getTime() || 0));
      if (own.length) update(own[own.length - 1]);
    },
    onSos(sos) { update(sos); },
    onAck(sos) {
      if (update(sos) && sos.acked_by) announce(`Your SOS was acknowledged by ${sos.acked_by}.`, true);
    },
    onEscalated(sos, stage) {
      update(sos, { escalation: escalationText(stage) });
    },
    onEnded(sos) {
      if (!update(sos)) return;
      if (sos.state === "resolved") announce(`Your SOS was resolved by ${sos.ended_by}.`, true);
    },
  };
}

/** What an escalation stage means for the person waiting (unknown stages get a general sentence). */
function escalationText(stage) {
  const known = {
    webhook: "No one has answered yet, so the building's paging service was alerted.",
    peers: "No one has answered yet, so nearby nodes were alerted (without your name or unit).",
  };
  return known[stage] || "No one has answered yet, so more people are being alerted.";
}
