// Helpers shared by every page: JSON calls to the node, safe DOM building, times, announcements.
//
import { adoptAccountLanguage, currentLanguage, startTranslating, wireLanguageMenu } from "./i18n.js";

// Server text only ever reaches the page as text nodes (el() and textContent), so a report or alert that
// contains markup shows the markup instead of running it; the CSP backs this up but is not the only guard.

/** An error the node (or the network) gave us, with a sentence a person can act on. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: a proxy page or a cut connection; fall back to the HTTP status below.
  }
  if (!response.ok || !body || body.ok === false) {
    const message = body && typeof body.error === "string" && body.error
      ? body.error
      : `The node answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, (body && body.status) || response.status);
  }
  return body;
}

async function call(path, init) {
  let response;
  try {
    // The node answers in this language where it can (CAP alerts carry one info per language).
    const headers = { "Accept-Language": currentLanguage(), ...(init && init.headers) };
    response = await fetch(path, { credentials: "same-origin", ...init, headers });
  } catch {
    throw new ApiError("Cannot reach the node. Check that you are on the building's Wi-Fi.", 0);
  }
  return answer(response);
}

/** GET a JSON document; throws ApiError with the server's error text. */
export function getJSON(path) {
  return call(path, { headers: { Accept: "application/json" } });
}

/** POST a JSON body (every state change goes this way, except the multipart report). */
export function postJSON(path, body = {}) {
  return call(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
}

/** PUT or DELETE (or any method) with an optional JSON body. */
export function sendJSON(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return call(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

/** POST multipart/form-data; the browser sets the Content-Type with its boundary. */
export function postForm(path, formData) {
  return call(path, { method: "POST", headers: { Accept: "application/json" }, body: formData });
}

/**
 * Build an element. attrs: "class", "dataset" (object), on<event> (function), anything else an attribute
 * (true = present, false/null/undefined = absent). Children: nodes or strings (strings become text nodes).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

/** The same for SVG elements (the map). */
export function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function" && name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.setAttribute("class", value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function appendAll(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

/** Find a required element by id (a missing one is a bug in the page, better loud than silent). */
export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`page is missing #${id}`);
  return node;
}

/** A Date from unix seconds, milliseconds, a digit string or an ISO string; null when there is none. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (value instanceof Date) return value;
  if (typeof value === "number") return new Date(value < 1e12 ? value * 1000 : value);
  if (/^\d+(\.\d+)?$/.test(value)) return toDate(Number(value));
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** The locale dates are written in: the browser's own when it speaks the page's language (es-MX keeps its own
 * order), else the page's language (an account in Chinese on a phone set to English). */
function dateLocale() {
  const language = currentLanguage();
  const browser = navigator.language || "en";
  if (browser.toLowerCase().split("-")[0] === language) return undefined;
  return language === "zh" ? "zh-CN" : language;
}

/** "12 May 2025, 14:05" in the reader's locale; unparseable values are shown as they came. */
export function formatTime(value) {
  const date = toDate(value);
  if (!date) return value ? String(value) : "";
  return date.toLocaleString(dateLocale(), { dateStyle: "medium", timeStyle: "short" });
}

/** "14:05" (or "2:05 PM"), for the SOS status lines. */
export function formatClock(value) {
  const date = toDate(value) || new Date();
  return date.toLocaleTimeString(dateLocale(), { hour: "2-digit", minute: "2-digit" });
}

/** "2025-05-12T14:05" for a datetime-local input, in local time. */
export function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/**
 * A datetime-local value with the reader's UTC offset ("2025-05-12T14:05:00+02:00"), so the node does not
 * have to guess which time zone the phone was in. Empty stays empty.
 */
export function withOffset(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  const offset = -date.getTimezoneOffset();
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  const seconds = value.length === 16 ? `${value}:00` : value;
  return `${seconds}${offset >= 0 ? "+" : "-"}${pad(offset / 60)}:${pad(offset % 60)}`;
}

/** A <time> element with a machine-readable datetime. */
export function timeEl(value, format = formatTime) {
  const date = toDate(value);
  return el("time", date ? { datetime: date.toISOString() } : {}, date ? format(date) : String(value ?? ""));
}

/** Show a result or error line; `kind` picks the look ("ok", "error", "" for neutral). */
export function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.classList.toggle("status-error", kind === "error");
  node.classList.toggle("status-ok", kind === "ok");
  // An error must be seen: bring it into view above the tab bar (.form-status has a scroll margin for it).
  if (kind === "error" && text) node.scrollIntoView({ block: "nearest" });
}

/** A size in words: "260 MB", "750 KB". */
export function sizeText(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${Math.round(bytes / 1e6)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} KB`;
}

/**
 * Check a chosen file before it is sent: its type by kind ("video" or "image") and its size against the node's
 * limit. Returns what is wrong in words, or "" when it may be sent (the node checks everything again).
 */
export function fileProblem(file, kind, maxBytes) {
  const what = kind === "video" ? "a video" : "a photo";
  if (file.size === 0) return `“${file.name}” is empty. Choose ${what} file.`;
  if (file.type && !file.type.startsWith(`${kind}/`)) {
    return `“${file.name}” is not ${what} (${file.type}). Choose ${what} file.`;
  }
  if (maxBytes && file.size > maxBytes) {
    return `“${file.name}” is ${sizeText(file.size)}; this building takes ${kind === "video" ? "videos"
      : "photos"} up to ${sizeText(maxBytes)}. ${kind === "video" ? "Trim it or choose a shorter part."
      : "Choose a smaller photo."}`;
  }
  return "";
}

/**
 * A video file's length in seconds as the browser reads it, or null when the browser cannot tell (a format it
 * does not play: the node then decides). Never waits more than `timeoutMs`.
 */
export function videoSeconds(file, timeoutMs = 4000) {
  return new Promise((resolve) => {
    const video = document.createElement("video");
    const url = URL.createObjectURL(file);
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      video.removeAttribute("src");
      URL.revokeObjectURL(url);
      resolve(value);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    video.preload = "metadata";
    video.muted = true;
    video.onloadedmetadata = () => finish(Number.isFinite(video.duration) ? video.duration : null);
    video.onerror = () => finish(null);
    video.src = url;
  });
}

/**
 * Say something through the page's aria-live regions. The region is emptied first and filled on the next
 * frame so that the same sentence twice in a row is still read out.
 */
export function announce(text, urgent = false) {
  const region = document.getElementById(urgent ? "announce-assertive" : "announce-polite");
  if (!region) return;
  region.textContent = "";
  requestAnimationFrame(() => { region.textContent = text; });
}

/** The caller's session; a signed-out or unreachable node both come back as role null (with `error`). */
export async function loadSession() {
  try {
    const session = await getJSON("/api/session");
    if (adoptAccountLanguage(session)) await new Promise(() => {});   // reloading in the account's language
    return session;
  } catch (error) {
    return { ok: false, role: null, error: error.message };
  }
}

/** Wire a sign-out button: revoke this session, then go to `next`. */
export function wireSignOut(button, next, statusNode) {
  button.hidden = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await postJSON("/api/logout");
      location.assign(next);
    } catch (error) {
      button.disabled = false;
      if (statusNode) setStatus(statusNode, `Could not sign out: ${error.message}`, "error");
    }
  });
}

/** Show a browser notification if the reader allowed them; silently skipped where the API is missing. */
export function notify(title, options = {}) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  try {
    new Notification(title, options);
  } catch {
    // Android Chrome only allows notifications from a service worker; the page's own announcement stands.
  }
}

/** The "Enable notifications" button: asks for permission only when clicked, then hides itself. */
export function wireNotifyButton(button, statusNode) {
  // Browsers refuse notifications to a page on plain http (and report "denied" without asking): say so, and
  // where to get the secure address, rather than blame settings the reader never changed.
  if (!window.isSecureContext) {
    button.hidden = true;
    if (statusNode) {
      statusNode.replaceChildren("Notifications need the node's secure (https) address. ",
        el("a", { href: "/join#secure", dataset: { testid: "secure-setup-link" } }, "Set up the secure connection"),
        " once on this device.");
    }
    return;
  }
  if (!("Notification" in window)) return;
  const refresh = () => {
    const permission = Notification.permission;
    button.hidden = permission !== "default";
    if (statusNode) {
      statusNode.textContent = permission === "denied"
        ? "Notifications are turned off for this site in this browser's settings (site settings, Notifications)."
        : "";
    }
  };
  refresh();
  button.addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } finally {
      refresh();
    }
  });
}

/** Run `fn` at most once per `ms`, trailing (for "reload the list after live events"). */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Human labels for report categories, shared by the report list and the moderation queue. */
export const REPORT_CATEGORIES = {
  "suspicious-activity": "Suspicious activity",
  crime: "Crime",
  "safety-hazard": "Safety hazard",
  "lost-and-found": "Lost and found",
  other: "Other",
};

export const REPORT_STATUS = {
  building: "Visible in the building",
  shared: "Shared with the neighborhood",
  hidden: "Hidden by the manager",
};

/** Person details, in the order the form asks for them (race/ethnicity last, on purpose). */
export const PERSON_FIELDS = [
  ["clothing", "Clothing"], ["hair", "Hair"], ["age", "Age range"], ["height", "Height"], ["build", "Build"],
  ["shoes", "Shoes"], ["features", "Distinguishing features"], ["vehicle", "Vehicle"], ["race", "Race/ethnicity"],
];

/** One report as an <article>, for the resident list and the moderation queue (which adds its own parts). */
export function reportArticle(report, extra = []) {
  const person = report.person && typeof report.person === "object" ? report.person : null;
  const details = person
    ? PERSON_FIELDS.filter(([key]) => person[key]).map(([key, label]) => [el("dt", {}, label), el("dd", {}, person[key])])
    : [];
  return el("article", { class: "card report", dataset: { id: String(report.id) } },
    el("header", { class: "card-head" },
      el("span", { class: "tag" }, REPORT_CATEGORIES[report.category] || report.category || "Report"),
      report.held ? null   // not yet the building's to see: the tag below says so
        : el("span", { class: `report-state state-${report.status}` }, REPORT_STATUS[report.status] || report.status || ""),
      report.held ? el("span", { class: "tag tag-held" }, "Held for review") : null,
      report.mine ? el("span", { class: "tag tag-mine" }, "Yours") : null),
    el("p", { class: "report-what", translate: "no" }, report.what || ""),
    report.held && report.held_reason
      ? el("p", { class: "held-reason" }, report.mine
        ? `Only you and the manager see this for now: it ${report.held_reason.split(":")[0]}.`
        : `Held: it ${report.held_reason}`)
      : null,
    el("dl", { class: "facts" },
      report.where ? [el("dt", {}, "Where"), el("dd", { translate: "no" }, report.where)] : null,
      report.when ? [el("dt", {}, "When"), el("dd", {}, timeEl(report.when))] : null,
      el("dt", {}, "Posted"), el("dd", {}, timeEl(report.created))),
    details.length ? el("div", { class: "person" }, el("h4", {}, "Person described"), el("dl", { class: "facts" }, details)) : null,
    report.has_photo
      ? el("img", { class: "report-photo", src: `/api/reports/${encodeURIComponent(report.id)}/photo`,
        alt: "Photo attached to the report", loading: "lazy", decoding: "async" })
      : null,
    extra);
}

/**
 * Mark every required field's label "(required)" where the page did not already, so that no form relies on the
 * browser's refusal to say which fields are needed (screen readers hear `required` from the field itself).
 */
export function markRequired(root = document) {
  for (const field of root.querySelectorAll("input[required], textarea[required], select[required]")) {
    const label = field.id && root.querySelector(`label[for="${CSS.escape(field.id)}"]`);
    if (!label || label.textContent.includes("(required)")) continue;
    label.append(" ", el("span", { class: "req", "aria-hidden": "true" }, "(required)"));
  }
}

// Every page imports this module: mark its required fields once the page is parsed (modules run after parsing),
// then show the page in the resident's language (node/web/i18n.js), with the language menu where a page has one.
markRequired();
startTranslating();
wireLanguageMenu(document.getElementById("language-select"));
