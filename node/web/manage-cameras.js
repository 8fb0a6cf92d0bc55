// Manager console, cameras: each camera's state, who may watch it, its live view; the storage the footage takes;
// and the clips, with play, hold (kept from retention and the free-space guard) and delete.

import { $, announce, debounce, el, getJSON, postJSON, sendJSON, setStatus, timeEl } from "./common.js";
import { ClipList, LiveView, cameraStateText, closePlayer, formatBytes } from "./cameras-view.js";

const REFRESH_MS = 10_000; // camera states, while the console is on screen

const HOLD_REASONS = { manager: "by you", sos: "by an SOS call", consent: "by consent" };

/** The Cameras panel; returns {load(), onClip()} for the console. */
export function initCameras() {
  const list = $("cameras-list");
  const status = $("cameras-status");
  const filter = $("clips-camera");
  const moreButton = $("clips-more");
  const cards = new Map(); // camera id -> card parts
  let loaded = false;

  const clips = new ClipList($("clips-list"), $("clips-status"), {
    emptyText: "No clips yet. A camera saves one when it sees movement, and around every SOS call.",
    extra: (clip, statusNode) => clipActions(clip, statusNode, () => reloadClips()),
  });
  const reloadClips = () => clips.load({ camera: filter.value, moreButton });

  const loadCameras = async () => {
    try {
      const { cameras = [], storage = {} } = await getJSON("/api/cameras");
      const seen = new Set();
      for (const camera of cameras) {
        seen.add(camera.id);
        if (!cards.has(camera.id)) cards.set(camera.id, cameraCard(camera));
        cards.get(camera.id).update(camera);
      }
      for (const [id, card] of cards) {
        if (!seen.has(id)) { card.live.stop(); cards.delete(id); }
      }
      list.replaceChildren(...cameras.map((camera) => cards.get(camera.id).node));
      setStatus(status, cameras.length ? "" : "No cameras are set up. Add them under [cameras] in the node's "
        + "configuration file.");
      showStorage(storage, cameras);
      fillFilter(filter, cameras);
    } catch (error) {
      setStatus(status, `Could not load cameras: ${error.message}`, "error");
    }
  };

  filter.addEventListener("change", () => {
    closePlayer();
    clips.load({ camera: filter.value, fresh: true, moreButton });
  });
  moreButton.addEventListener("click", () => clips.load({ camera: filter.value, older: true, moreButton }));
  setInterval(() => { if (loaded && !document.hidden) loadCameras(); }, REFRESH_MS);
  const onClip = debounce(() => { loadCameras(); reloadClips(); }, 800);

  return {
    async load() {
      loaded = true;
      await loadCameras();
      await reloadClips();
    },
    /** A live "clip" message: a camera saved a clip. */
    onClip,
  };
}

function showStorage(storage, cameras) {
  $("storage-full").hidden = !storage.disk_full;
  const names = new Map(cameras.map((camera) => [camera.id, camera.name || camera.id]));
  const perCamera = Object.entries(storage.clip_bytes || {});
  const total = perCamera.reduce((sum, [, bytes]) => sum + (Number(bytes) || 0), 0);
  const parts = [`Footage on disk: ${formatBytes(total)}`];
  if (perCamera.length > 1) {
    parts[0] += ` (${perCamera.map(([id, bytes]) => `${names.get(id) || id} ${formatBytes(bytes)}`).join(", ")})`;
  }
  parts.push(storage.purged_bytes
    ? `Deleted since the node started, by retention and the free-space guard: ${formatBytes(storage.purged_bytes)}.`
    : "Nothing deleted by retention or the free-space guard since the node started.");
  $("storage-status").textContent = `${parts[0]}. ${parts[1]}`;
}

function fillFilter(select, cameras) {
  const wanted = ["", ...cameras.map((camera) => camera.id)].join("\n");
  if (select.dataset.ids === wanted) return;
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, "All cameras"),
    ...cameras.map((camera) => el("option", { value: camera.id }, camera.name || camera.id)));
  select.value = cameras.some((camera) => camera.id === current) ? current : "";
  select.dataset.ids = wanted;
}

/** One camera's card, built once and updated in place (a reload must not stop its live view or steal focus). */
function cameraCard(camera) {
  const id = camera.id;
  const title = el("h3", {});
  const state = el("p", { class: "camera-state", dataset: { camera: id } });
  const note = el("p", { class: "status-error camera-note" });
  const facts = el("dl", { class: "facts" });
  const accessStatus = el("p", { class: "form-status", role: "status" });
  const liveStatus = el("p", { class: "form-status", role: "status" });
  const live = new LiveView(camera, liveStatus);
  const box = (who) => el("input", { type: "checkbox", id: `camera-${id}-${who}`, dataset: { access: who } });
  const residents = box("residents");
  const responders = box("responders");
  const legend = el("legend", {});
  let saving = false;

  const save = async () => {
    const wanted = { residents: residents.checked, responders: responders.checked };
    saving = true;
    residents.disabled = responders.disabled = true;
    try {
      const { access } = await sendJSON("PUT", `/api/cameras/${encodeURIComponent(id)}/access`, wanted);
      camera.access = access;
      const text = `${camera.name || id}: ${whoMayWatch(access)}.`;
      setStatus(accessStatus, text, "ok");
      announce(text);
    } catch (error) {
      setStatus(accessStatus, `Could not change who can watch: ${error.message}`, "error");
    } finally {
      residents.checked = Boolean(camera.access?.residents);
      responders.checked = Boolean(camera.access?.responders);
      residents.disabled = responders.disabled = false;
      saving = false;
    }
  };
  residents.addEventListener("change", save);
  responders.addEventListener("change", save);

  const node = el("article", { class: "card camera", dataset: { camera: id } },
    title, state, note, facts,
    el("fieldset", { class: "camera-access" }, legend,
      el("span", { class: "check" }, residents, el("label", { for: residents.id }, "Residents can watch")),
      el("span", { class: "check" }, responders, el("label", { for: responders.id }, "On-call responders can watch"))),
    accessStatus,
    live.frame, el("div", { class: "actions" }, live.button), liveStatus);

  const update = (fresh) => {
    camera = fresh;
    const name = camera.name || id;
    const s = camera.state || {};
    title.textContent = name === id ? name : `${name} (${id})`;
    legend.textContent = `Who can watch ${name}`;
    state.textContent = cameraStateText(s, true);
    state.dataset.status = s.status || "";
    note.textContent = s.note || "";
    note.hidden = !s.note;
    const picture = s.codec
      ? `${s.codec}${s.encoding ? ", encoded into H.264 here" : ""}`
      : "not known yet";
    const rows = [
      ["Source", camera.source || ""],
      ["Video", picture],
      ["Clips saved", `${s.clips ?? 0} since the node started`],
      ["Last clip", s.last_clip ? timeEl(s.last_clip) : "none yet"],
      ["Reconnects", String(s.reconnects ?? 0)],
      ["Watching now", String(s.viewers ?? 0)],
      ["Motion detection", camera.detect_motion ? "on" : "off"],
      ["Privacy masks", camera.privacy_masks ? `${camera.privacy_masks} (blacked out everywhere)` : "none"],
      ["Keeps footage", `${camera.retention_days} days unless held`],
    ];
    facts.replaceChildren(...rows.flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)]));
    if (!saving && camera.access) {
      residents.checked = Boolean(camera.access.residents);
      responders.checked = Boolean(camera.access.responders);
    }
    live.update(camera);
  };
  return { node, live, update };
}

function whoMayWatch(access) {
  if (access.residents && access.responders) return "residents and on-call responders can watch";
  if (access.residents) return "residents can watch";
  if (access.responders) return "only on-call responders (and you) can watch";
  return "only you can watch";
}

/** Hold with a note / Release hold, and Delete with a confirm step; the node's refusal is shown as it says it. */
function clipActions(clip, statusNode, reload) {
  const uid = encodeURIComponent(clip.uid);
  const holds = el("p", { class: "clip-holds muted" });
  const run = async (button, action) => {
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      setStatus(statusNode, error.message, "error");
    } finally {
      button.disabled = false;
    }
  };
  const named = (label) => [label, el("span", { class: "visually-hidden" }, ` clip of ${clip.camera_name}`)];

  // Hold: a small form for the note (why it is kept: "police case 14"), then the request.
  const holdButton = el("button", { type: "button", class: "button-small clip-hold", dataset: { uid: clip.uid } },
    named("Hold"));
  const noteId = `hold-note-${clip.uid}`;
  const noteInput = el("input", { id: noteId, maxlength: 200, autocomplete: "off", placeholder: "e.g. police case 14" });
  const holdSubmit = el("button", { type: "submit", class: "button-small" }, "Hold clip");
  const holdCancel = el("button", { type: "button", class: "button-small button-secondary" }, "Cancel");
  const holdForm = el("form", { class: "hold-form", hidden: true },
    el("label", { for: noteId }, "Why keep it? (optional)"), noteInput,
    el("div", { class: "actions" }, holdSubmit, holdCancel));
  holdButton.addEventListener("click", () => { holdButton.hidden = true; holdForm.hidden = false; noteInput.focus(); });
  holdCancel.addEventListener("click", () => { holdForm.hidden = true; holdButton.hidden = false; holdButton.focus(); });
  holdForm.addEventListener("submit", (event) => {
    event.preventDefault();
    run(holdSubmit, async () => {
      await postJSON(`/api/clips/${uid}/hold`, { note: noteInput.value.trim() });
      announce("Clip held: retention and the free-space guard keep it until you release it.");
      await reload();
    });
  });

  const release = el("button", { type: "button", class: "button-small button-secondary clip-release",
    dataset: { uid: clip.uid } }, named("Release hold"));
  release.addEventListener("click", () => run(release, async () => {
    const answer = await sendJSON("DELETE", `/api/clips/${uid}/hold`);
    await reload();
    if (answer.holds?.length) {
      setStatus(statusNode, `Your hold is released, but the clip is still held ${holdText(answer.holds)}.`);
    } else {
      announce("Hold released.");
    }
  }));

  // Delete: a confirm step first, the footage is gone for good.
  const ask = el("button", { type: "button", class: "button-small button-danger clip-delete", dataset: { uid: clip.uid } },
    named("Delete"));
  const yes = el("button", { type: "button", class: "button-small button-danger clip-delete-yes" }, "Yes, delete it");
  const no = el("button", { type: "button", class: "button-small button-secondary" }, "Keep it");
  const confirm = el("div", { class: "actions", role: "group", "aria-label": "Delete this clip for good?", hidden: true },
    el("span", { class: "confirm-text" }, "Delete this clip for good?"), yes, no);
  const back = () => { confirm.hidden = true; ask.hidden = false; };
  ask.addEventListener("click", () => { ask.hidden = true; confirm.hidden = false; no.focus(); });
  no.addEventListener("click", () => { back(); ask.focus(); });
  yes.addEventListener("click", () => run(yes, async () => {
    try {
      await sendJSON("DELETE", `/api/clips/${uid}`);
    } catch (error) {
      back();
      ask.focus();
      throw error;
    }
    announce("Clip deleted.");
    await reload();
  }));

  if (clip.held) {
    holds.textContent = "Held.";
    getJSON(`/api/clips/${uid}`).then(({ clip: detail }) => {
      holds.textContent = detail.holds?.length ? `Held ${holdText(detail.holds)}.` : "";
    }, () => {});
  }
  return el("div", { class: "clip-actions" },
    clip.held ? holds : null,
    el("div", { class: "actions" }, clip.held ? release : holdButton, ask),
    clip.held ? null : holdForm,
    confirm);
}

function holdText(holds) {
  return holds.map((hold) => `${HOLD_REASONS[hold.reason] || hold.reason}${hold.note ? ` (\u201c${hold.note}\u201d)` : ""}`)
    .join(", ");
}
