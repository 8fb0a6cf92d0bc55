// The resident's Cameras section: the cameras the manager shared with them (state and live view), the recent
// clips of those cameras plus the resident's own uploads, and the form to upload a clip from their own camera.
//
// An uploaded clip is private to the resident who sent it: the node shows it to no one else, the manager included.

import { $, debounce, el, fileProblem, getJSON, postForm, sendJSON, setStatus, toLocalInput, videoSeconds, withOffset }
  from "./common.js";
import { ClipList, LiveView, cameraStateText, closePlayer, stopAllLive } from "./cameras-view.js";

const REFRESH_MS = 15_000; // camera states while the section is on screen

/** Wire the Cameras section; returns {show(), hide(), onClip()} for the router and the live stream. */
export function initCameras(session) {
  const list = $("cameras-list");
  const status = $("cameras-status");
  const moreButton = $("clips-more");
  const manager = session.role === "manager";
  const cards = new Map(); // camera id -> {node, state, live}
  let visible = false;
  let clipsStale = true;
  let timer = null;

  const clips = new ClipList($("clips-list"), $("clips-status"), {
    emptyText: "No clips yet. Clips appear here when a shared camera sees movement, and your own uploads too.",
    extra: (clip, statusNode) => (clip.upload ? deleteUpload(clip, statusNode) : null),
  });

  // A resident may delete their own upload; a confirm step first, as the file is gone for good.
  const deleteUpload = (clip, statusNode) => {
    const ask = el("button", { type: "button", class: "button-small button-secondary clip-delete" },
      "Delete", el("span", { class: "visually-hidden" }, " this upload"));
    const yes = el("button", { type: "button", class: "button-small button-danger" }, "Yes, delete it");
    const no = el("button", { type: "button", class: "button-small button-secondary" }, "Keep it");
    const confirm = el("div", { class: "actions", role: "group", "aria-label": "Delete this upload for good?", hidden: true },
      el("span", { class: "confirm-text" }, "Delete this upload for good?"), yes, no);
    ask.addEventListener("click", () => { ask.hidden = true; confirm.hidden = false; no.focus(); });
    no.addEventListener("click", () => { confirm.hidden = true; ask.hidden = false; ask.focus(); });
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        await sendJSON("DELETE", `/api/clips/${encodeURIComponent(clip.uid)}`);
        await clips.load({ moreButton });
        setStatus($("clips-status"), "Your upload was deleted.", "ok");
      } catch (error) {
        yes.disabled = false;
        setStatus(statusNode, error.message, "error");
      }
    });
    return el("div", { class: "actions" }, ask, confirm);
  };

  const card = (camera) => {
    const state = el("p", { class: "camera-state" });
    const liveStatus = el("p", { class: "form-status", role: "status" });
    const live = new LiveView(camera, liveStatus);
    const node = el("article", { class: "card camera", dataset: { camera: camera.id } },
      el("h3", {}, camera.name || camera.id),
      state, live.frame, el("div", { class: "actions" }, live.button), liveStatus);
    return { node, state, live };
  };

  const loadCameras = async () => {
    try {
      const { cameras = [] } = await getJSON("/api/cameras");
      const seen = new Set();
      for (const camera of cameras) {
        seen.add(camera.id);
        let entry = cards.get(camera.id);
        if (!entry) cards.set(camera.id, (entry = card(camera)));
        entry.live.update(camera);
        entry.node.querySelector("h3").textContent = camera.name || camera.id;
        entry.state.textContent = cameraStateText(camera.state);
        entry.state.dataset.status = camera.state?.status || "";
      }
      for (const [id, entry] of cards) {
        if (!seen.has(id)) { entry.live.stop(); cards.delete(id); } // no longer shared: the stream ends too
      }
      list.replaceChildren(...cameras.map((camera) => cards.get(camera.id).node));
      setStatus(status, cameras.length ? "" : manager
        ? "This node has no cameras set up."
        : "The building manager has not shared any camera with residents.");
    } catch (error) {
      setStatus(status, `Could not load cameras: ${error.message}`, "error");
    }
  };

  const loadClips = () => {
    clipsStale = false;
    return clips.load({ moreButton });
  };
  const reloadClipsSoon = debounce(loadClips, 800);
  moreButton.addEventListener("click", () => clips.load({ older: true, moreButton }));

  initUpload(manager, loadClips, session.limits || {});

  return {
    show() {
      visible = true;
      loadCameras();
      if (clipsStale || clips.clips.length === 0) loadClips();
      clearInterval(timer);
      timer = setInterval(() => { if (!document.hidden) loadCameras(); }, REFRESH_MS);
    },
    hide() {
      if (!visible) return;
      visible = false;
      clearInterval(timer);
      stopAllLive();
      closePlayer();
    },
    /** A live "clip" message: a shared camera saved a clip. */
    onClip() {
      clipsStale = true;
      if (visible) {
        reloadClipsSoon();
        loadCameras(); // the camera's clip count and state
      }
    },
  };
}

/** The upload form: a video from the resident's own camera, private to them. */
function initUpload(manager, onUploaded, limits) {
  const form = $("upload-form");
  const file = $("upload-file");
  const recorded = $("upload-recorded");
  const note = $("upload-note");
  const submit = $("upload-submit");
  const status = $("upload-status");

  if (manager) {
    // The node refuses uploads from the manager: the building's footage comes from its cameras.
    form.hidden = true;
    $("upload-manager").hidden = false;
    return;
  }

  // A recording is from the past: the picker should not offer next week.
  const setMax = () => { recorded.max = toLocalInput(new Date()); };
  setMax();
  recorded.addEventListener("focus", setMax);

  // What can be told before sending is told at once: the type, the size, and the length where the browser can read
  // it (a 260 MB file is not sent in full only to be refused).
  const problem = async (chosen) => {
    const found = fileProblem(chosen, "video", limits.upload_bytes);
    if (found || !limits.upload_seconds) return found;
    const seconds = await videoSeconds(chosen);
    if (seconds !== null && seconds > limits.upload_seconds) {
      return `\u201c${chosen.name}\u201d is ${Math.round(seconds / 60)} min long; this building takes videos up to `
        + `${Math.round(limits.upload_seconds / 60)} min. Trim it or choose a shorter part.`;
    }
    return "";
  };
  file.addEventListener("change", async () => {
    const chosen = file.files && file.files[0];
    const found = chosen ? await problem(chosen) : "";
    file.setAttribute("aria-invalid", found ? "true" : "false");
    if (found) setStatus(status, found, "error");
    else if (status.classList.contains("status-error")) setStatus(status, "");
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files && file.files[0];
    if (!chosen) {
      setStatus(status, "Choose a video file first.", "error");
      file.focus();
      return;
    }
    const found = await problem(chosen);
    if (found) {
      setStatus(status, found, "error");
      file.focus();
      return;
    }
    const data = new FormData();
    data.append("clip", chosen, chosen.name);
    if (recorded.value) data.append("recorded_at", withOffset(recorded.value));
    if (note.value.trim()) data.append("note", note.value.trim());
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    setStatus(status, "Uploading and checking the video\u2026 A long clip can take a minute.");
    try {
      await postForm("/api/uploads", data);
      form.reset();
      setStatus(status, "Uploaded. The clip is in your list below; only you can see it.", "ok");
      await onUploaded();
    } catch (error) {
      setStatus(status, error.message, "error");
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
}
