// Sharing a time range of one camera as one bundle, under a request's card: the owner picks a camera and a range
// within the request's window (all of it by default), sees what that covers (clips, footage, the gaps where nothing
// was recorded) as the node counts it, and only then confirms. One consent, one bundle; each range shared shows
// its state and can be withdrawn like a clip until the agency downloads it. Per-clip sharing stays as it was.

import { announce, el, formatTime, postJSON, sendJSON, setStatus, timeEl, toDate, toLocalInput } from "./common.js";
import { formatBytes, formatDuration } from "./cameras-view.js";

const PREVIEW_DELAY_MS = 300;

/** The time of a datetime-local value in POSIX seconds (local time), or null. */
function inputSeconds(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.getTime() / 1000;
}

function clock(value) {
  return timeEl(value, (date) => date.toLocaleTimeString(undefined, { timeStyle: "medium" }));
}

export class RangeShare {
  /** `card` is the request's card (its request, list and manager wording); `consentText` words a state. */
  constructor(card, consentText) {
    this.card = card;
    this.consentText = consentText;
    this.key = "";
    this.preview = null;
    this.timer = null;
    this.generation = 0;
    this.shared = el("ul", { class: "range-list" });
    this.status = el("p", { class: "form-status", role: "status", tabindex: "-1" });
    this.open = el("button", { type: "button", class: "button-small range-open" }, "Share a time range\u2026");
    this.form = this.buildForm();
    this.node = el("section", { class: "range-share", "aria-label": "Share a time range" },
      this.shared, el("div", { class: "actions" }, this.open), this.form, this.status);
    this.open.addEventListener("click", () => this.show());
  }

  buildForm() {
    const base = `range-${this.card.request.id}`.replace(/[^A-Za-z0-9_-]/g, "_");
    this.camera = el("select", { id: `${base}-camera`, class: "range-camera" });
    this.from = el("input", { type: "datetime-local", id: `${base}-from`, class: "range-from", required: true });
    this.to = el("input", { type: "datetime-local", id: `${base}-to`, class: "range-to", required: true });
    this.summary = el("div", { class: "range-summary", "aria-live": "polite" });
    const radio = (value, label) => {
      const id = `${base}-${value}`;
      const input = el("input", { type: "radio", id, name: `${base}-choice`, value, checked: value === "redacted" });
      return [input, el("span", { class: "choice" }, input, el("label", { for: id }, label))];
    };
    [this.redacted, this.redactedRow] = radio("redacted", "Blurred faces and plates (recommended)");
    [this.original, this.originalRow] = radio("original", "Original, unredacted (you will be asked to confirm)");
    this.submit = el("button", { type: "submit", class: "button-small range-submit" }, "Share this range");
    const cancel = el("button", { type: "button", class: "button-small button-secondary range-cancel" }, "Cancel");
    this.confirm = el("div", { class: "consent-confirm range-confirm", role: "group", hidden: true },
      el("p", { class: "confirm-text" }, "The agency will see faces, license plates and everything else in every "
        + "clip of the range, unblurred. Share the original clips?"),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "button-small button-danger range-original-yes",
          onclick: () => this.share("original") }, "Yes, share the originals"),
        el("button", { type: "button", class: "button-small button-secondary",
          onclick: () => { this.confirm.hidden = true; this.submit.hidden = false; this.original.focus(); } },
        "No, go back")));
    const form = el("form", { class: "range-form", hidden: true },
      el("fieldset", {}, el("legend", {}, "Share a time range as one bundle"),
        el("label", { for: this.camera.id }, "Camera"), this.camera,
        el("label", { for: this.from.id }, "From"), this.from,
        el("label", { for: this.to.id }, "To"), this.to),
      this.summary,
      el("fieldset", {}, el("legend", {}, "What the agency gets"), this.redactedRow, this.originalRow),
      el("p", { class: "hint" }, "The clips of the range are joined in time order into one bundle; the gaps between "
        + "them are stated in it. You can withdraw it until the agency downloads it."),
      el("div", { class: "actions" }, this.submit, cancel), this.confirm);
    for (const input of [this.camera, this.from, this.to]) input.addEventListener("change", () => this.schedule());
    cancel.addEventListener("click", () => this.hide(true));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.original.checked) {
        this.submit.hidden = true;
        this.confirm.hidden = false;
        this.confirm.querySelector("button.button-secondary").focus();
        return;
      }
      this.share("redacted");
    });
    return form;
  }

  /** Follow the request: its cameras, its window, and the ranges already shared. */
  update(request) {
    const open = request.status === "open";
    const clips = request.clips || [];
    const cameras = new Map();
    for (const clip of clips) {
      const entry = cameras.get(clip.camera) || { name: clip.camera_name || clip.camera, count: 0 };
      entry.count += 1;
      cameras.set(clip.camera, entry);
    }
    const key = JSON.stringify([open, [...cameras], request.window]);
    if (key !== this.key) {
      this.key = key;
      const chosen = this.camera.value;
      this.camera.replaceChildren(...[...cameras].map(([id, { name, count }]) =>
        el("option", { value: id }, `${name} (${count} matching clip${count === 1 ? "" : "s"})`)));
      if (cameras.has(chosen)) this.camera.value = chosen;
      const start = toDate(request.window?.start);
      const end = toDate(request.window?.end);
      if (start && end) {
        for (const input of [this.from, this.to]) {
          input.min = toLocalInput(start);
          input.max = toLocalInput(new Date(end.getTime() + 59_000));
        }
      }
    }
    this.node.hidden = !open || (!cameras.size && !(request.ranges || []).length);
    this.open.hidden = !cameras.size || !this.form.hidden;
    this.shared.replaceChildren(...(request.ranges || []).map((range) => this.rangeItem(range)));
    this.shared.hidden = !(request.ranges || []).length;
  }

  show() {
    const window = this.card.request.window || {};
    this.from.value = toLocalInput(toDate(window.start));
    this.to.value = toLocalInput(toDate(window.end));
    this.defaults = [this.from.value, this.to.value];
    this.redacted.checked = true;
    this.confirm.hidden = true;
    this.submit.hidden = false;
    this.open.hidden = true;
    this.form.hidden = false;
    setStatus(this.status, "");
    this.camera.focus();
    this.load();
  }

  hide(focus = false) {
    this.form.hidden = true;
    this.open.hidden = false;
    this.preview = null;
    if (focus) this.open.focus();
  }

  /** The body the node takes: the camera and the range, null where the owner kept the request's own bound. */
  body() {
    const window = this.card.request.window || {};
    const bound = (input, index, edge, pick) => {
      if (input.value === this.defaults[index]) return null;
      const seconds = inputSeconds(input.value);
      const limit = toDate(edge)?.getTime() / 1000;
      return seconds === null || !Number.isFinite(limit) ? seconds : pick(seconds, limit);
    };
    return { camera: this.camera.value, start: bound(this.from, 0, window.start, Math.max),
      end: bound(this.to, 1, window.end, Math.min) };
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), PREVIEW_DELAY_MS);
  }

  async load() {
    const mine = ++this.generation;
    this.preview = null;
    this.submit.disabled = true;
    this.summary.replaceChildren(el("p", { class: "hint" }, "Counting the footage in this range\u2026"));
    try {
      const { range } = await postJSON(this.path("/preview"), this.body());
      if (mine !== this.generation) return;
      this.preview = range;
      this.summary.replaceChildren(...this.describe(range));
      this.submit.disabled = false;
    } catch (error) {
      if (mine !== this.generation) return;
      this.summary.replaceChildren(el("p", { class: "status-error range-error" }, error.message));
    }
  }

  /** What the range covers, as the node counted it: clips, footage, size and every gap. */
  describe(range) {
    const gaps = range.gaps || [];
    return [
      el("p", { class: "range-total" }, `${range.clips} clip${range.clips === 1 ? "" : "s"} of ${range.camera_name}, `
        + `${formatDuration(range.footage_seconds)} of footage (${formatBytes(range.size)}), from `,
      timeEl(range.start), " to ", clock(range.end), "."),
      el("p", { class: "range-gap-count" }, gaps.length
        ? `${gaps.length} gap${gaps.length === 1 ? "" : "s"} with nothing recorded:` : "No gaps: the clips cover the whole range."),
      gaps.length ? el("ul", { class: "range-gaps" }, gaps.map((gap) => el("li", {}, clock(gap.start), " to ",
        clock(gap.end), ` (${formatDuration(gap.end - gap.start)})`))) : null,
    ].filter(Boolean);
  }

  path(suffix = "") {
    return `/api/requests/${encodeURIComponent(this.card.request.id)}/ranges${suffix}`;
  }

  async share(choice) {
    if (!this.preview) return;
    const { clips } = this.preview;
    this.submit.disabled = true;
    setStatus(this.status, "Sharing\u2026");
    try {
      await postJSON(this.path(), { ...this.body(), choice });
      this.hide();
      setStatus(this.status, "");
      announce(`Shared ${clips} clip${clips === 1 ? "" : "s"} as one bundle. It is being prepared.`);
      await this.card.list.load();
    } catch (error) {
      this.submit.disabled = false;
      this.submit.hidden = false;
      this.confirm.hidden = true;
      setStatus(this.status, `Could not share: ${error.message}`, "error");
    }
  }

  rangeItem(range) {
    const withdraw = range.can_withdraw
      ? el("button", { type: "button", class: "button-small button-secondary range-withdraw" }, "Withdraw",
        el("span", { class: "visually-hidden" }, ` the range of ${range.camera_name} from ${formatTime(range.range_start)}`))
      : null;
    if (withdraw) withdraw.addEventListener("click", () => this.withdraw(range, withdraw));
    return el("li", { class: "range-item", dataset: { uid: range.clip_uid, consent: range.state } },
      el("p", { class: "consent-choice" }, el("strong", {},
        range.choice === "original" ? "Range shared: originals, unredacted" : "Range shared: faces and plates blurred"),
      ` \u2014 ${range.camera_name}, ${range.clips} clips, `, timeEl(range.range_start), " to ", clock(range.range_end)),
      el("p", { class: `consent-text state-${range.state}` }, this.consentText(range)),
      range.cooling_off && range.visible_at
        ? el("p", { class: "hint consent-cooling" }, "The agency cannot see this before ", timeEl(range.visible_at),
          ": withdrawn until then, it leaves no trace.") : null,
      withdraw ? el("div", { class: "actions" }, withdraw) : null);
  }

  async withdraw(range, button) {
    button.disabled = true;
    try {
      await sendJSON("DELETE", `/api/requests/${encodeURIComponent(this.card.request.id)}/clips/`
        + `${encodeURIComponent(range.clip_uid)}/consent`);
      setStatus(this.status, "Consent withdrawn: the range is not shared.", "ok");
      announce("Consent withdrawn: the range is not shared.");
      await this.card.list.load();
    } catch (error) {
      button.disabled = false;
      setStatus(this.status, `Could not withdraw: ${error.message}`, "error");
    }
  }
}
