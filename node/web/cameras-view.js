// Cameras and clips as both the resident app and the manager console show them: a camera's state in words, the
// live view (an MJPEG <img> that runs only while someone asked for it), and the clip list with its player.
//
// A live view holds one of the camera's few viewer places on the node and keeps the phone's radio busy, so it
// starts only on "Watch live" and stops on "Stop", when the section is left and when the page is hidden.

import { el, formatTime, getJSON, setStatus, timeEl } from "./common.js";

const PAGE = 30;
const KIND_LABELS = { motion: "Motion", sos: "SOS", manual: "Saved by the manager", upload: "Your upload" };

/** "streaming", "reconnecting: <why>"... in words; `detail` adds the reason and picture size (the console). */
export function cameraStateText(state = {}, detail = false) {
  const reason = detail && state.reason ? `: ${state.reason}` : "";
  switch (state.status) {
    case "streaming": {
      const size = detail && state.width && state.height ? ` (${state.width} \u00d7 ${state.height})` : "";
      return `Streaming${size}${state.motion ? ", motion now" : ""}`;
    }
    case "starting": return "Starting";
    case "reconnecting": return detail ? `Reconnecting${reason}` : "Reconnecting to the camera; not recording now";
    case "error": return detail ? `Error${reason || ": unknown"} (still retrying)` : "Not working right now; not recording";
    case "stopped": return "Stopped; not recording";
    default: return state.status ? String(state.status) : "Unknown";
  }
}

/** "6 s", "1 min 5 s", "1 h 2 min". */
export function formatDuration(seconds) {
  const total = Math.max(0, Math.round(Number(seconds) || 0));
  if (total < 60) return `${total} s`;
  if (total < 3600) return `${Math.floor(total / 60)} min${total % 60 ? ` ${total % 60} s` : ""}`;
  const minutes = Math.round((total % 3600) / 60);
  return `${Math.floor(total / 3600)} h${minutes ? ` ${minutes} min` : ""}`;
}

/** "12.3 MB" (powers of 1000, as disks are sold). */
export function formatBytes(bytes) {
  let value = Number(bytes) || 0;
  for (const unit of ["B", "kB", "MB", "GB"]) {
    if (value < 1000) return `${unit === "B" ? value : value.toFixed(value < 10 ? 1 : 0)} ${unit}`;
    value /= 1000;
  }
  return `${value.toFixed(1)} TB`;
}

const running = new Set(); // live views playing now, so that leaving the section stops them all

/** Stop every live view on the page (the section was left, or the page hidden). */
export function stopAllLive() {
  for (const view of [...running]) view.stop();
}

document.addEventListener("visibilitychange", () => { if (document.hidden) stopAllLive(); });
window.addEventListener("pagehide", stopAllLive);

/**
 * A "Watch live" button and the picture it opens. The <img> exists only while watching: taking the element and
 * its src away is what makes the browser close the stream and free the viewer place on the node.
 */
export class LiveView {
  constructor(camera, statusNode) {
    this.camera = camera;
    this.statusNode = statusNode;
    this.frame = el("div", { class: "camera-live", hidden: true });
    this.button = el("button", { type: "button", class: "button-small camera-watch", dataset: { camera: camera.id } });
    this.button.addEventListener("click", () => (this.img ? this.stop() : this.start()));
    this.img = null;
    this.label();
  }

  label() {
    const name = this.camera.name || this.camera.id;
    this.button.replaceChildren(this.img ? "Stop live view" : "Watch live",
      el("span", { class: "visually-hidden" }, `: ${name}`));
    this.button.classList.toggle("button-secondary", Boolean(this.img));
  }

  /** Camera settings changed (a reload): keep the view, update the names and picture size. */
  update(camera) {
    this.camera = camera;
    this.label();
  }

  start() {
    stopAllLive(); // one at a time: a phone on Wi-Fi has little to spare
    const { id, name, state = {} } = this.camera;
    const img = el("img", {
      alt: `Live view of ${name || id}`, width: state.width || 640, height: state.height || 480,
      src: `/api/cameras/${encodeURIComponent(id)}/live?t=${Date.now()}`,
    });
    img.addEventListener("load", () => setStatus(this.statusNode, "Live.", "ok"), { once: true });
    img.addEventListener("error", () => {
      if (this.img !== img) return;
      this.stop();
      setStatus(this.statusNode, "The live view could not be shown: the camera may be reconnecting, or too many "
        + "people are watching. Try again in a moment.", "error");
    });
    this.img = img;
    this.frame.replaceChildren(img);
    this.frame.hidden = false;
    running.add(this);
    setStatus(this.statusNode, "Connecting to the live view\u2026");
    this.label();
  }

  stop() {
    const img = this.img;
    this.img = null;
    running.delete(this);
    if (img) {
      img.removeAttribute("src");
      img.remove();
    }
    this.frame.hidden = true;
    if (this.statusNode.textContent && !this.statusNode.classList.contains("status-error")) setStatus(this.statusNode, "");
    this.label();
  }
}

let playing = null; // the one open clip player

/** Close the open clip player, if any. */
export function closePlayer() {
  if (playing) playing();
}

/**
 * The clips, newest first, each a button (thumbnail, camera, local time, duration) that opens the player in its
 * place. `extra(clip, statusNode)` adds the caller's own controls (hold and delete in the console). Items are kept
 * across reloads when the clip did not change, so a live "clip" message does not stop a video being watched.
 */
export class ClipList {
  constructor(listNode, statusNode, { emptyText, extra = () => null } = {}) {
    this.listNode = listNode;
    this.statusNode = statusNode;
    this.emptyText = emptyText;
    this.extra = extra;
    this.items = new Map(); // uid -> {key, node}
    this.clips = [];
    this.generation = 0;
  }

  /**
   * Fetch the newest clips (as many as are shown, so a reload keeps the older pages), or with `older` the page
   * before the oldest shown; with `fresh` only the first page (another camera was chosen). `camera` narrows the
   * list to one camera. `moreButton` is hidden when there is nothing older.
   */
  async load({ older = false, fresh = false, camera = "", moreButton = null } = {}) {
    const limit = older || fresh ? PAGE : Math.min(500, Math.max(PAGE, this.clips.length));
    const query = new URLSearchParams({ limit: String(limit) });
    if (camera) query.set("camera", camera);
    const oldest = this.clips[this.clips.length - 1];
    if (older && oldest) query.set("before", String(oldest.start));
    const mine = ++this.generation;
    if (!this.clips.length) setStatus(this.statusNode, "Loading clips\u2026");
    try {
      const { clips = [] } = await getJSON(`/api/clips?${query}`);
      if (mine !== this.generation) return; // a newer load (another camera chosen) won
      if (older) {
        const seen = new Set(this.clips.map((clip) => clip.uid));
        this.set([...this.clips, ...clips.filter((clip) => !seen.has(clip.uid))]);
      } else {
        this.set(clips);
      }
      if (moreButton) moreButton.hidden = clips.length < limit;
    } catch (error) {
      if (mine === this.generation) setStatus(this.statusNode, `Could not load clips: ${error.message}`, "error");
    }
  }

  set(clips) {
    this.clips = clips;
    const next = new Map();
    for (const clip of clips) {
      const key = JSON.stringify(clip);
      const old = this.items.get(clip.uid);
      if (old && old.key === key) {
        next.set(clip.uid, old);
        continue;
      }
      const node = this.item(clip);
      const player = old?.node.querySelector(".clip-player:not([hidden])");
      if (player) { // a changed clip (a new hold) that is being watched: carry the video over
        node.querySelector(".clip-player").replaceWith(player);
        node.querySelector(".clip-open").hidden = true;
      }
      next.set(clip.uid, { key, node });
    }
    for (const [uid, { node }] of this.items) {
      if (!next.has(uid) && node.querySelector(".clip-player video")) closePlayer();
    }
    this.items = next;
    this.listNode.replaceChildren(...clips.map((clip) => next.get(clip.uid).node));
    setStatus(this.statusNode, clips.length ? "" : this.emptyText);
  }

  item(clip) {
    const when = formatTime(clip.start);
    const name = clip.upload ? "Your upload" : clip.camera_name || clip.camera;
    const open = el("button", { type: "button", class: "clip-open", dataset: { uid: clip.uid } },
      clip.thumbnail
        ? el("img", { class: "clip-thumb", src: clip.thumbnail, alt: "", loading: "lazy", decoding: "async",
          width: clip.width || 320, height: clip.height || 240 })
        : el("span", { class: "clip-thumb clip-thumb-none", "aria-hidden": "true" }, "No picture"),
      el("span", { class: "clip-text" },
        el("span", { class: "clip-camera" }, name),
        el("span", { class: "clip-when" }, timeEl(clip.start)),
        el("span", { class: "clip-length" }, formatDuration(clip.duration)),
        el("span", { class: "visually-hidden" }, ". Play")));
    const tags = [
      clip.kind !== "upload" ? el("span", { class: `tag clip-kind kind-${clip.kind}` }, KIND_LABELS[clip.kind] || clip.kind) : null,
      clip.held ? el("span", { class: "tag tag-held" }, "Held") : null,
      clip.note ? el("span", { class: "clip-note" }, clip.note) : null,
    ];
    const status = el("p", { class: "form-status", role: "status" });
    const node = el("li", { class: "clip", dataset: { uid: clip.uid, camera: clip.camera } },
      open,
      el("div", { class: "clip-player", hidden: true }),
      el("div", { class: "clip-tags" }, tags),
      this.extra(clip, status),
      status);
    open.addEventListener("click", () => this.play(node, clip, `${name}, ${when}`));
    return node;
  }

  play(node, clip, title) {
    closePlayer();
    const open = node.querySelector(".clip-open");
    const video = el("video", { controls: true, playsinline: true, preload: "metadata", src: clip.video,
      "aria-label": `Clip: ${title}`, width: clip.width || 320, height: clip.height || 240 });
    const error = el("p", { class: "form-status", role: "alert" });
    video.addEventListener("error", () => {
      setStatus(error, "This browser could not play the clip. Try Download instead.", "error");
    });
    const close = el("button", { type: "button", class: "button-small button-secondary clip-close" },
      "Close video", el("span", { class: "visually-hidden" }, `: ${title}`));
    const player = node.querySelector(".clip-player");
    player.replaceChildren(el("p", { class: "clip-caption" }, title, ` \u00b7 ${formatDuration(clip.duration)}`),
      video, error,
      el("div", { class: "actions" }, close,
        el("a", { class: "button-small button-link button-secondary", href: clip.video, download: "" },
          "Download", el("span", { class: "visually-hidden" }, `: ${title}`))));
    player.hidden = false;
    open.hidden = true;
    const done = () => {
      if (playing !== done) return;
      playing = null;
      video.pause();
      video.removeAttribute("src");
      video.load(); // drops the connection for the rest of the file
      const current = this.items.get(clip.uid)?.node || node;
      const place = current.querySelector(".clip-player");
      const hadFocus = place.contains(document.activeElement);
      place.replaceChildren();
      place.hidden = true;
      const button = current.querySelector(".clip-open");
      button.hidden = false;
      if (hadFocus && button.isConnected) button.focus();
    };
    playing = done;
    close.addEventListener("click", done);
    video.focus();
    video.play().catch(() => {}); // refused without a user gesture on some phones: the controls are there
  }
}
