// Requests for footage from agencies (police, fire investigators...), as both the manager console and the resident
// app show them: each request's public fields, and under it the reader's own matching clips, each with its own
// consent. Nothing leaves the node unless the clip's owner presses Share on that clip; ignoring a request shares
// nothing, and the agency cannot tell an ignored request from one with no footage.
//
// Sharing is redacted (faces and plates blurred) by default. The original is a second, explicit choice with its own
// confirmation. A consent can be withdrawn until the agency has downloaded the bundle.

import { announce, el, formatTime, getJSON, postJSON, sendJSON, setStatus, timeEl, toDate } from "./common.js";
import { formatDuration } from "./cameras-view.js";
import { RangeShare } from "./range-share.js";

const POLL_MS = 4_000; // while a bundle is being prepared (redaction takes a while) and the list is on screen

export const CHOICES = {
  redacted: "Blurred faces and plates",
  original: "Original, unredacted",
};

/** "Within 300 m of 40.7128, -74.0060" or "Inside an area of 5 points around 40.7130, -74.0050". */
export function areaText(area) {
  if (!area || typeof area !== "object") return "Not given";
  if (area.circle) {
    const { lat, lon, radius_m: radius } = area.circle;
    return `Within ${formatMeters(radius)} of ${lat}, ${lon}`;
  }
  if (Array.isArray(area.polygon)) {
    const points = area.polygon.map(([lat, lon]) => [Number(lat), Number(lon)]).filter((p) => p.every(Number.isFinite));
    if (!points.length) return "An area with no valid points";
    const lat = points.reduce((sum, p) => sum + p[0], 0) / points.length;
    const lon = points.reduce((sum, p) => sum + p[1], 0) / points.length;
    return `Inside an area of ${points.length} points around ${lat.toFixed(4)}, ${lon.toFixed(4)}`;
  }
  return "An area this page cannot describe";
}

function formatMeters(value) {
  const meters = Number(value);
  if (!Number.isFinite(meters)) return `${value} m`;
  return meters >= 1000 ? `${(meters / 1000).toFixed(meters % 1000 ? 1 : 0)} km` : `${Math.round(meters)} m`;
}

/** The time window as "<start> to <end>" (both <time> elements, in the reader's time zone). */
export function windowParts(span) {
  if (!span) return ["Not given"];
  const start = toDate(span.start);
  const end = toDate(span.end);
  const sameDay = start && end && start.toDateString() === end.toDateString();
  return [timeEl(span.start), " to ",
    sameDay ? timeEl(span.end, (date) => date.toLocaleTimeString(undefined, { hour: "numeric", minute: "2-digit" }))
      : timeEl(span.end)];
}

/** A request's public fields as <dt>/<dd> pairs (shared with the transparency page). */
export function requestFacts(request, extra = []) {
  const agency = request.agency && typeof request.agency === "object" ? request.agency : null;
  const rows = [
    ["Agency", agency ? [agency.name || "Unnamed agency", agency.jurisdiction ? ` (${agency.jurisdiction})` : ""]
      : request.agency_name || request.agency || "Unknown"],
    ["Case number", request.case_number || ""],
    ["Reason", el("span", { class: "prewrap" }, request.reason || "")],
    ["Footage from", windowParts(request.window)],
    ["Area", areaText(request.area)],
    ["Urgency", request.urgency === "emergency" ? el("strong", { class: "urgency-emergency" }, "Emergency") : "Normal"],
    request.contact ? ["Contact", request.contact] : null,
    typeof request.cooling_off_seconds === "number" ? ["Cooling-off", coolingText(request)] : null,
    ["Received", timeEl(request.received ?? request.created)],
    ["Expires", timeEl(request.expires)],
    ...extra,
  ].filter(Boolean);
  return el("dl", { class: "facts" }, rows.flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)]));
}

/** How long a shared clip stays invisible to the agency, in words (stated before the owner decides). */
function coolingText(request) {
  const seconds = request.cooling_off_seconds;
  if (!seconds) {
    return request.urgency === "emergency" ? "None: for an emergency request the agency sees a shared clip at once."
      : "None: the agency sees a shared clip at once.";
  }
  const span = seconds < 120 ? `${seconds} seconds` : `${Math.round(seconds / 60)} minutes`;
  return `A clip you share stays invisible to the agency for ${span}; withdrawn within them, it leaves no trace.`;
}

/** One consent's state in words (the clip's owner reads it). */
export function consentText(consent) {
  const choice = consent.choice === "original" ? "the original, unredacted clip" : "the clip with faces and plates blurred";
  switch (consent.state) {
    case "building":
      return consent.choice === "original"
        ? "Preparing bundle\u2026 (the original clip, sealed for the agency)"
        : "Preparing bundle\u2026 Blurring faces and plates takes a minute or two.";
    case "ready":
      return `Ready for the agency: it can now download ${choice}. It has not downloaded it yet.`;
    case "downloaded": {
      const kept = consent.release_at ? `, kept until ${formatTime(consent.release_at)}` : "";
      return `Downloaded by the agency on ${formatTime(consent.downloaded)}${kept}.`;
    }
    case "failed":
      return `Failed: ${consent.error || "the bundle could not be built"}.`;
    case "closed":
      return "Closed: the holding period is over and the bundle was deleted from this node.";
    default:
      return consent.state ? `State: ${consent.state}` : "Shared.";
  }
}

/**
 * The list of requests with the reader's clips. `manager` picks the wording. `onLoaded(requests)` is told after
 * every load (the console's banner and the resident's link count use it). Cards and clips are kept across reloads
 * so a playing video or an open Share form survives a live refresh.
 */
export class RequestList {
  constructor(listNode, statusNode, { manager = false, onLoaded = () => {}, onRegister = null } = {}) {
    this.listNode = listNode;
    this.statusNode = statusNode;
    this.manager = manager;
    this.onLoaded = onLoaded;
    this.onRegister = onRegister; // (agency key) => void: the console's "register this agency" shortcut
    this.cards = new Map(); // request id -> RequestCard
    this.requests = [];
    this.visible = true;
    this.timer = null;
    this.generation = 0;
  }

  async load() {
    const mine = ++this.generation;
    if (!this.requests.length && !this.listNode.children.length) setStatus(this.statusNode, "Loading requests\u2026");
    try {
      const { requests = [] } = await getJSON("/api/requests");
      if (mine !== this.generation) return;
      this.set(requests);
    } catch (error) {
      if (mine === this.generation) setStatus(this.statusNode, `Could not load requests: ${error.message}`, "error");
    }
  }

  set(requests) {
    this.requests = requests;
    const next = new Map();
    for (const request of requests) {
      let card = this.cards.get(request.id);
      if (!card) card = new RequestCard(this, request);
      else card.update(request);
      next.set(request.id, card);
    }
    for (const [id, card] of this.cards) if (!next.has(id)) card.close();
    this.cards = next;
    this.listNode.replaceChildren(...requests.map((request) => next.get(request.id).node));
    setStatus(this.statusNode, requests.length ? "" : this.manager
      ? "No requests from agencies. When one asks for footage of this building, it shows here."
      : "No agency has asked for footage that matches your uploads.");
    this.schedule();
    this.onLoaded(requests);
  }

  /** Poll while a bundle is being prepared, so "Preparing" turns into "Ready" without a reload. */
  schedule() {
    clearTimeout(this.timer);
    const building = this.requests.some((request) => (request.clips || []).some((clip) => clip.consent?.state === "building")
      || (request.ranges || []).some((range) => range.state === "building"));
    if (building && this.visible) this.timer = setTimeout(() => { if (!document.hidden) this.load(); else this.schedule(); }, POLL_MS);
  }

  show() {
    this.visible = true;
    return this.load();
  }

  hide() {
    this.visible = false;
    clearTimeout(this.timer);
    for (const card of this.cards.values()) card.stopVideo();
  }

  /** Focus a request's card (the console's emergency banner jumps here). */
  focus(id) {
    const card = this.cards.get(id);
    if (!card) return false;
    card.node.scrollIntoView({ block: "start" });
    card.title.focus({ preventScroll: true });
    return true;
  }
}

class RequestCard {
  constructor(list, request) {
    this.list = list;
    this.clips = new Map(); // uid -> ClipItem
    this.title = el("h3", { tabindex: "-1" });
    this.head = el("div", {});
    this.clipList = el("ul", { class: "request-clips" });
    this.clipNote = el("p", { class: "hint" });
    this.request = request;
    this.range = new RangeShare(this, consentText);
    this.node = el("article", { class: "card agency-request", dataset: { id: request.id } },
      this.head, this.clipNote, this.range.node, this.clipList);
    this.headKey = "";
    this.update(request);
  }

  update(request) {
    this.request = request;
    const { clips = [], ...rest } = request;
    const key = JSON.stringify(rest);
    if (key !== this.headKey) {
      this.headKey = key;
      this.renderHead();
    }
    const next = new Map();
    for (const clip of clips) {
      let item = this.clips.get(clip.uid);
      if (!item) item = new ClipItem(this, clip);
      else item.update(clip);
      next.set(clip.uid, item);
    }
    for (const [uid, item] of this.clips) if (!next.has(uid)) item.stopVideo();
    this.clips = next;
    this.clipList.replaceChildren(...clips.map((clip) => next.get(clip.uid).node));
    this.clipList.hidden = !clips.length;
    this.range.update(request);
    const refused = request.status === "refused";
    const mineWord = this.list.manager ? "the building cameras'" : "your";
    if (refused) {
      this.clipNote.textContent = clips.length
        ? `${clips.length} of ${mineWord} clips would match, but nothing can be shared for a refused request.`
        : "Nothing can be shared for a refused request.";
    } else if (!clips.length) {
      this.clipNote.textContent = `None of ${mineWord} clips match this request. Nothing is shared.`;
    } else {
      this.clipNote.textContent = `${clips.length} of ${mineWord} clips ${clips.length === 1 ? "matches" : "match"}. `
        + "Each is shared only if you press Share on it (or share a time range of one camera as one bundle); "
        + "if you do nothing, nothing is shared.";
    }
  }

  renderHead() {
    const request = this.request;
    const agency = request.agency || {};
    const onRegister = this.list.onRegister;
    // Unknown to this node (no name): the manager may want to register it, with the key the request came with.
    const register = request.status === "refused" && onRegister && agency.key && !agency.name
      ? el("p", {}, "Agency key: ", el("code", { class: "key" }, agency.key), " ",
        el("button", { type: "button", class: "button-small button-secondary request-register",
          onclick: () => onRegister(agency.key) }, "Register this agency\u2026"))
      : null;
    const emergency = request.urgency === "emergency";
    const refused = request.status === "refused";
    this.node.classList.toggle("request-emergency", emergency);
    this.node.classList.toggle("request-refused", refused);
    this.node.dataset.status = request.status || "";
    this.node.dataset.urgency = request.urgency || "";
    this.title.replaceChildren(`${agency.name || "An agency"}: case ${request.case_number || "(no number)"}`);
    this.head.replaceChildren(...[
      el("header", { class: "card-head" },
        emergency ? el("span", { class: "badge badge-emergency" }, "Emergency") : null,
        refused ? el("span", { class: "tag tag-refused" }, "Refused") : el("span", { class: "tag tag-open" }, "Open")),
      this.title,
      refused
        ? el("div", { class: "refusal", role: "note" },
          el("p", {}, el("strong", {}, "Refused by this node: "), request.refusal || "no reason given"),
          this.list.manager ? el("p", { class: "hint" }, "If the agency is genuine, register it under ",
            el("a", { href: "#agencies" }, "Agencies"), ": the request is then looked at again.") : null,
          register)
        : null,
      requestFacts(request)].filter(Boolean));
  }

  close() {
    for (const item of this.clips.values()) item.stopVideo();
  }

  stopVideo() {
    this.close();
  }
}

class ClipItem {
  constructor(card, clip) {
    this.card = card;
    this.clip = clip;
    this.consentKey = null;
    this.video = null;
    const name = !card.list.manager && clip.camera === "upload" ? "Your upload"
      : clip.camera_name || clip.camera || "Clip";
    this.name = name;
    this.playButton = el("button", { type: "button", class: "button-small button-secondary request-play" });
    this.playButton.addEventListener("click", () => (this.video ? this.stopVideo(true) : this.play()));
    this.player = el("div", { class: "request-player", hidden: true });
    this.consentBox = el("div", { class: "consent" });
    this.status = el("p", { class: "form-status", role: "status", tabindex: "-1" });
    const thumb = clip.thumbnail
      ? el("img", { class: "clip-thumb", src: clip.thumbnail, alt: `Still from the clip of ${name}`, loading: "lazy",
        decoding: "async", width: 320, height: 240 })
      : el("span", { class: "clip-thumb clip-thumb-none", "aria-hidden": "true" }, "No picture");
    this.node = el("li", { class: "request-clip", dataset: { uid: clip.uid } },
      el("div", { class: "request-clip-media" }, thumb,
        el("div", { class: "clip-text" },
          el("span", { class: "clip-camera" }, name),
          el("span", { class: "clip-when" },
            timeEl(clip.start, (date) => date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" })), " to ",
            timeEl(clip.end, (date) => date.toLocaleTimeString(undefined, { timeStyle: "medium" }))),
          el("span", { class: "clip-length" }, formatDuration(clip.duration)),
          el("div", { class: "actions" }, this.playButton))),
      this.player, this.consentBox, this.status);
    this.labelPlay();
    this.update(clip);
  }

  labelPlay() {
    this.playButton.replaceChildren(this.video ? "Close video" : "Play",
      el("span", { class: "visually-hidden" }, ` clip of ${this.name}, ${formatTime(this.clip.start)}`));
  }

  play() {
    for (const card of this.card.list.cards.values()) card.stopVideo();
    const video = el("video", { controls: true, playsinline: true, preload: "metadata", src: this.clip.video,
      width: 320, height: 240, "aria-label": `Clip of ${this.name}, ${formatTime(this.clip.start)}` });
    video.addEventListener("error", () => setStatus(this.status, "This browser could not play the clip.", "error"));
    this.video = video;
    this.player.replaceChildren(video);
    this.player.hidden = false;
    this.labelPlay();
    video.play().catch(() => {});
  }

  stopVideo(focus = false) {
    if (!this.video) return;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
    this.video = null;
    this.player.replaceChildren();
    this.player.hidden = true;
    this.labelPlay();
    if (focus) this.playButton.focus();
  }

  update(clip) {
    this.clip = clip;
    const key = JSON.stringify([clip.consent, this.card.request.status]);
    if (key === this.consentKey) return;
    const before = this.consentKey === null ? null : this.node.dataset.consent;
    this.consentKey = key;
    // The state box now says what happened; an old "Consent withdrawn" would only contradict it.
    if (!this.status.classList.contains("status-error")) setStatus(this.status, "");
    const hadFocus = this.consentBox.contains(document.activeElement);
    this.renderConsent();
    if (hadFocus) (this.consentBox.querySelector("button:not([hidden])") || this.status).focus();
    const after = clip.consent?.state;
    if (before === "building" && (after === "ready" || after === "failed")) {
      announce(`Clip of ${this.name}: ${consentText(clip.consent)}`);
    }
  }

  renderConsent() {
    const clip = this.clip;
    const request = this.card.request;
    const consent = clip.consent;
    this.node.dataset.consent = consent ? consent.state : "none";
    if (request.status === "refused") {
      this.consentBox.replaceChildren();
      return;
    }
    if (consent) {
      this.consentBox.replaceChildren(this.consentState(consent));
    } else {
      this.consentBox.replaceChildren(this.shareControls());
    }
  }

  consentState(consent) {
    const withdraw = consent.can_withdraw
      ? el("button", { type: "button", class: "button-small button-secondary consent-withdraw" },
        "Withdraw", el("span", { class: "visually-hidden" }, ` consent for the clip of ${this.name}`))
      : null;
    if (withdraw) withdraw.addEventListener("click", () => this.withdraw(withdraw));
    return el("div", { class: "consent-state", dataset: { state: consent.state } },
      el("p", { class: "consent-choice" },
        el("strong", {}, consent.choice === "original" ? "Shared: original, unredacted" : "Shared: faces and plates blurred"),
        consent.created ? [" (you agreed on ", timeEl(consent.created), ")"] : null),
      el("p", { class: `consent-text state-${consent.state}` }, consentText(consent)),
      withdraw ? el("div", { class: "actions" }, withdraw) : null,
      consent.cooling_off && consent.visible_at
        ? el("p", { class: "hint consent-cooling" }, "The agency cannot see this before ", timeEl(consent.visible_at),
          ": withdrawn until then, it leaves no trace.") : null,
      !consent.can_withdraw && consent.state === "downloaded"
        ? el("p", { class: "hint" }, "The agency already has it, so it can no longer be withdrawn.") : null);
  }

  /** "Share…" opens the choice: blurred (the default) or original, which asks again before anything is sent. */
  shareControls() {
    const agency = this.card.request.agency?.name || "the agency";
    const base = `consent-${this.card.request.id}-${this.clip.uid}`.replace(/[^A-Za-z0-9_-]/g, "_");
    const open = el("button", { type: "button", class: "button-small consent-share" },
      "Share\u2026", el("span", { class: "visually-hidden" }, ` the clip of ${this.name} with ${agency}`));
    const radio = (value, label, hint) => {
      const id = `${base}-${value}`;
      const input = el("input", { type: "radio", id, name: base, value, checked: value === "redacted",
        "aria-describedby": `${id}-hint` });
      return [input, el("span", { class: "choice" }, input, el("label", { for: id }, label),
        el("span", { id: `${id}-hint`, class: "hint choice-hint" }, hint))];
    };
    const [redacted, redactedRow] = radio("redacted", `${CHOICES.redacted} (recommended)`,
      "Faces and license plates are blurred before the clip leaves the node.");
    const [original, originalRow] = radio("original", CHOICES.original,
      "Everything in the picture, as the camera saw it. You will be asked to confirm.");
    const submit = el("button", { type: "submit", class: "button-small consent-submit" }, `Share with ${agency}`);
    const cancel = el("button", { type: "button", class: "button-small button-secondary" }, "Cancel");
    const form = el("form", { class: "consent-form", hidden: true },
      el("fieldset", {},
        el("legend", {}, `Share the clip of ${this.name} with ${agency}?`),
        redactedRow, originalRow),
      el("p", { class: "hint" }, "Only this clip is shared. You can withdraw it until the agency downloads it."),
      el("div", { class: "actions" }, submit, cancel));

    const yes = el("button", { type: "button", class: "button-small button-danger consent-original-yes" },
      "Yes, share the original");
    const back = el("button", { type: "button", class: "button-small button-secondary" }, "No, go back");
    const confirmText = `The agency will see faces, license plates and everything else in the picture, unblurred. `
      + "Share the original clip?";
    const confirmId = `${base}-confirm`;
    const confirm = el("div", { class: "consent-confirm", role: "group", "aria-labelledby": confirmId, hidden: true },
      el("p", { id: confirmId, class: "confirm-text" }, confirmText),
      el("div", { class: "actions" }, yes, back));

    open.addEventListener("click", () => { open.hidden = true; form.hidden = false; redacted.focus(); });
    cancel.addEventListener("click", () => {
      form.hidden = true; open.hidden = false; redacted.checked = true; open.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (original.checked) {
        form.hidden = true;
        confirm.hidden = false;
        back.focus();
        return;
      }
      this.share("redacted", submit);
    });
    back.addEventListener("click", () => { confirm.hidden = true; form.hidden = false; original.focus(); });
    yes.addEventListener("click", () => this.share("original", yes));
    return el("div", { class: "consent-none" },
      el("p", { class: "consent-text" }, "Not shared."),
      el("div", { class: "actions" }, open), form, confirm);
  }

  path() {
    return `/api/requests/${encodeURIComponent(this.card.request.id)}/clips/${encodeURIComponent(this.clip.uid)}/consent`;
  }

  async share(choice, button) {
    button.disabled = true;
    setStatus(this.status, "Sharing\u2026");
    try {
      const { consent } = await postJSON(this.path(), { choice });
      setStatus(this.status, "");
      this.apply(consent);
      announce(choice === "original" ? "Shared the original clip. The bundle is being prepared."
        : "Shared with faces and plates blurred. The bundle is being prepared.");
      await this.card.list.load();
    } catch (error) {
      button.disabled = false;
      setStatus(this.status, `Could not share: ${error.message}`, "error");
    }
  }

  async withdraw(button) {
    button.disabled = true;
    setStatus(this.status, "Withdrawing\u2026");
    try {
      await sendJSON("DELETE", this.path());
      setStatus(this.status, "");
      this.apply(null);
      setStatus(this.status, "Consent withdrawn: the clip is not shared.", "ok");
      announce("Consent withdrawn: the clip is not shared.");
      this.consentBox.querySelector(".consent-share")?.focus();
      await this.card.list.load();
    } catch (error) {
      button.disabled = false;
      setStatus(this.status, `Could not withdraw: ${error.message}`, "error");
    }
  }

  /** Show a consent the node just answered with, before the list reload confirms it. */
  apply(consent) {
    const request = this.card.request;
    const clips = (request.clips || []).map((clip) => (clip.uid === this.clip.uid ? { ...clip, consent } : clip));
    request.clips = clips;
    this.update({ ...this.clip, consent });
    this.card.list.schedule();
  }
}
