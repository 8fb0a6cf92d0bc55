// Agency portal, served by `nnode agency-client portal` on this computer (node/sharing/portal.py). The page never
// holds the agency key: it calls the local portal, which signs each call to the node, checks the node's key
// against the agency's pins, and downloads and verifies bundles into the agency's folder. Each call carries the
// token from the address the command printed (its #token= fragment), kept in this tab's session storage.

const TOKEN_HEADER = "NNode-Portal-Token";
const token = (() => {
  const given = new URLSearchParams(location.hash.slice(1)).get("token");
  if (given) {
    sessionStorage.setItem("nnode-portal-token", given);
    history.replaceState(null, "", location.pathname);
  }
  return given || sessionStorage.getItem("nnode-portal-token") || "";
})();

// ---- small helpers -------------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** Build an element; attrs: "class", on<event> functions, others as attributes. Strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function setStatus(node, text, kind) {
  node.textContent = text || "";
  node.classList.toggle("status-error", kind === "error");
  node.classList.toggle("status-ok", kind === "ok");
}

const bytesToHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** POSIX milliseconds as the UTC time a request carries: 2026-11-20T21:00:00Z (whole seconds). */
const utc = (ms) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");

/** A time as the node, `nnode verify` and the agency client spell it: ISO 8601 UTC (strings are shown as given). */
function describeTime(value) {
  if (typeof value === "string") return value;
  const date = new Date(typeof value === "number" ? value * 1000 : NaN);
  return Number.isNaN(date.getTime()) ? String(value ?? "") : date.toISOString();
}

function sizeText(bytes) {
  if (typeof bytes !== "number") return "";
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// ---- calls to the local portal -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, value) {
  const headers = { Accept: "application/json", [TOKEN_HEADER]: token };
  if (value !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: value === undefined ? undefined : JSON.stringify(value),
                                   credentials: "omit", cache: "no-store" });
  } catch {
    throw new ApiError("Cannot reach the portal on this computer: is `nnode agency-client portal` still running?", 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall back to the status below
  }
  if (!response.ok || !body || body.ok === false) {
    const message = body && typeof body.error === "string" && body.error
      ? body.error : `The portal answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, (body && body.status) || response.status);
  }
  return body;
}

// ---- the agency and the node ---------------------------------------------------------------------------------

/** Show the keys and the node's key as checked against the pins; false (and the reason shown) when refused. */
async function showState() {
  const status = $("portal-status");
  try {
    const state = await api("GET", "/api/state");
    $("agency-key").textContent = state.agency;
    $("encryption-key").textContent = state.encryption_key || "none: an old single-key file (it posts no request)";
    $("node-url").textContent = state.node;
    $("node-key").textContent = state.node_key;
    $("node-key-origin").textContent = `(${state.node_key_origin})`;
    $("out-folder").textContent = state.folder;
    setStatus(status, "");
    return true;
  } catch (error) {
    setStatus(status, error.message, "error");
    return false;
  }
}

// ---- the request form ----------------------------------------------------------------------------------------

const FIELD_ERRORS = ["case", "reason", "start", "end", "lat", "lon", "radius", "polygon", "urgency", "expires", "contact"];

function clearFieldErrors() {
  for (const name of FIELD_ERRORS) {
    const note = $(`req-${name}-error`);
    note.hidden = true;
    note.textContent = "";
    $(`req-${name}`).removeAttribute("aria-invalid");
  }
}

function showFieldError(name, text) {
  const note = $(`req-${name}-error`);
  note.textContent = text;
  note.hidden = false;
  $(`req-${name}`).setAttribute("aria-invalid", "true");
}

/** Which form field a node error names ("window.start: ...", "out of policy: the area is ..."). */
function fieldOf(message) {
  const text = message.toLowerCase();
  const rules = [
    [/^case_number\b|case number/, "case"],
    [/^reason\b|a reason is required/, "reason"],
    [/^window\.start\b|footage older than/, "start"],
    [/^window\.end\b|^window\b|the window is/, "end"],
    [/^area\.circle\.lat\b/, "lat"],
    [/^area\.circle\.lon\b/, "lon"],
    [/^area\.circle\.radius_m\b/, "radius"],
    [/^area\.polygon\b/, "polygon"],
    [/^urgency\b/, "urgency"],
    [/^contact\b/, "contact"],
    [/^expires\b|may stay open/, "expires"],
  ];
  for (const [pattern, name] of rules) if (pattern.test(text)) return name;
  if (/^area\b|the area is/.test(text)) return $("area-polygon").checked ? "polygon" : "radius";
  return null;
}

function localTime(id, label) {
  const value = $(id).value;
  const date = value ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime())) {
    showFieldError(id.replace("req-", ""), `${label}: choose a date and time`);
    return null;
  }
  return date.getTime();
}

function readForm() {
  const start = localTime("req-start", "Window start");
  const end = localTime("req-end", "Window end");
  const days = Number($("req-expires").value);
  if (!Number.isInteger(days) || days < 1) showFieldError("expires", "Open for: a whole number of days");
  if (start === null || end === null || !Number.isInteger(days) || days < 1) return null;
  let area;
  if ($("area-polygon").checked) {
    const corners = $("req-polygon").value.split(";").map((p) => p.trim()).filter(Boolean)
      .map((p) => p.replace(/,/g, " ").split(/\s+/));
    const bad = corners.findIndex((c) => c.length !== 2);
    if (bad >= 0) {
      showFieldError("polygon", `Corner ${bad + 1}: expected a latitude and a longitude`);
      return null;
    }
    area = { polygon: corners };
  } else {
    const radius = $("req-radius").value.trim();
    area = { circle: { lat: $("req-lat").value.trim(), lon: $("req-lon").value.trim(),
                       radius_m: /^\d{1,9}$/.test(radius) ? Number(radius) : radius } };
  }
  const now = Date.now();
  return {
    v: 1, id: bytesToHex(crypto.getRandomValues(new Uint8Array(16))),
    case_number: $("req-case").value.trim(), reason: $("req-reason").value.trim(),
    window: { start: utc(start), end: utc(end) }, area, urgency: $("req-urgency").value,
    contact: $("req-contact").value.trim(), expires: utc(now + days * 86400 * 1000), created: utc(now),
  };
}

async function submitRequest(event) {
  event.preventDefault();
  const status = $("req-status");
  clearFieldErrors();
  setStatus(status, "");
  const fields = readForm();
  if (!fields) {
    setStatus(status, "Check the fields marked above.", "error");
    return;
  }
  $("req-submit").disabled = true;
  setStatus(status, "Signing and sending…");
  try {
    const body = await api("POST", "/api/requests", fields);
    const request = body.request || {};
    const state = request.status || request.state;
    setStatus(status, `Request ${request.id || fields.id} sent${state ? `: ${state}` : ""}. The node accepted it.`, "ok");
    await refresh();
  } catch (error) {
    const field = error.status === 400 ? fieldOf(error.message) : null;
    if (field) showFieldError(field, error.message);
    setStatus(status, `The node refused the request: ${error.message}`, "error");
    if (field) $(`req-${field}`).focus();
  } finally {
    $("req-submit").disabled = false;
  }
}

function toggleArea() {
  const polygon = $("area-polygon").checked;
  $("polygon-fields").hidden = !polygon;
  $("circle-fields").hidden = polygon;
}

// ---- requests and bundles ------------------------------------------------------------------------------------

function requestCard(request) {
  const span = request.window || {};
  const state = request.status || request.state;
  const refused = request.refused || request.status_reason || request.refusal;
  const disclosures = Array.isArray(request.disclosures) ? request.disclosures : [];
  return el("article", { class: "card", "data-request": request.id },
    el("div", { class: "card-head" },
      el("h3", {}, `Case ${request.case_number || "(none)"}`),
      state ? el("span", { class: "tag" }, state) : null,
      request.urgency === "emergency" ? el("span", { class: "tag tag-queue" }, "emergency") : null),
    request.reason ? el("p", { class: "prewrap" }, request.reason) : null,
    el("dl", { class: "facts" },
      el("dt", {}, "Request"), el("dd", {}, el("code", {}, request.id || "")),
      el("dt", {}, "Window"), el("dd", {}, `${describeTime(span.start)} to ${describeTime(span.end)}`),
      el("dt", {}, "Expires"), el("dd", {}, describeTime(request.expires)),
      refused ? [el("dt", {}, "Refused"), el("dd", {}, String(refused))] : null),
    el("h4", {}, "Disclosures"),
    disclosures.length === 0
      ? el("p", { class: "muted" }, "No bundles ready yet.")
      : el("ul", { class: "disclosures" }, disclosures.map((d) => {
        const count = d.bundles ?? d.ready ?? 0;
        return el("li", {}, `Node ${String(d.node || "?").slice(0, 16)}…: ${count} bundle${count === 1 ? "" : "s"} ready`,
          d.address || d.url ? [", at ", el("code", {}, d.address || d.url)] : ", address unknown");
      })));
}

function verifiedView(result) {
  const clip = `${result.clip}?token=${encodeURIComponent(token)}`;
  return el("div", { class: "verified", "data-verified": result.bundle_id },
    el("p", { class: "status-ok" }, `Bundle ${result.bundle_id}: VERIFIED, made ${result.created}, case ` +
      `${result.case_number}, camera ${result.camera}, ${result.start} to ${result.end}, the ${result.kind} clip; ` +
      `node key ${result.node_key_origin}.`),
    el("p", {}, "Saved in ", el("code", {}, result.folder), "."),
    el("video", { controls: true, preload: "metadata", src: clip, "aria-label": `Clip of bundle ${result.bundle_id}` }),
    el("details", {}, el("summary", {}, "Verification report"), el("pre", { class: "prewrap" }, result.report)));
}

async function fetchBundle(bundle, button, card) {
  const status = $("bundles-status");
  button.disabled = true;
  setStatus(status, `Fetching and verifying bundle ${bundle.id}…`);
  try {
    const result = await api("POST", `/api/bundles/${encodeURIComponent(bundle.id)}/fetch`);
    card.querySelector(".verified")?.remove();
    card.append(verifiedView(result));
    setStatus(status, `Bundle ${result.bundle_id} verified into ${result.folder}.`, "ok");
  } catch (error) {
    setStatus(status, `Bundle ${bundle.id}: ${error.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

function bundleCard(bundle) {
  const button = el("button", { type: "button", class: "button-small", "aria-label": `Fetch and verify bundle ${bundle.id}` },
    bundle.verified_here ? "Verify again" : "Fetch and verify");
  const card = el("article", { class: "card", "data-bundle": bundle.id },
    el("div", { class: "card-head" }, el("h3", {}, `Case ${bundle.case_number || ""}`),
      bundle.downloaded ? el("span", { class: "tag" }, "downloaded") : el("span", { class: "tag tag-mine" }, "new")),
    bundle.downloaded ? el("p", { class: "muted" }, `First downloaded ${describeTime(bundle.downloaded)}.`) : null,
    el("dl", { class: "facts" },
      el("dt", {}, "Bundle"), el("dd", {}, el("code", {}, bundle.id)),
      el("dt", {}, "Request"), el("dd", {}, el("code", {}, bundle.request_id || "")),
      el("dt", {}, "Made"), el("dd", {}, describeTime(bundle.created)),
      el("dt", {}, "Size"), el("dd", {}, sizeText(bundle.size)),
      el("dt", {}, "SHA-256"), el("dd", {}, el("code", {}, bundle.sha256 || ""))),
    el("div", { class: "actions" }, button));
  button.addEventListener("click", () => fetchBundle(bundle, button, card));
  return card;
}

async function refresh() {
  const requestsStatus = $("requests-status");
  const bundlesStatus = $("bundles-status");
  if (!(await showState())) return;
  try {
    const { requests } = await api("GET", "/api/requests");
    $("requests-list").replaceChildren(...requests.map(requestCard));
    setStatus(requestsStatus, requests.length ? "" : "No requests from this agency on this node yet.");
  } catch (error) {
    setStatus(requestsStatus, error.message, "error");
  }
  try {
    const { bundles } = await api("GET", "/api/bundles");
    const open = new Map([...document.querySelectorAll("#bundles-list [data-verified]")].map((v) => [v.dataset.verified, v]));
    $("bundles-list").replaceChildren(...bundles.map((b) => {
      const card = bundleCard(b);
      if (open.has(b.id)) card.append(open.get(b.id));
      return card;
    }));
    if (!bundlesStatus.classList.contains("status-ok")) {
      setStatus(bundlesStatus, bundles.length ? "" : "No bundles for this agency yet.");
    }
  } catch (error) {
    setStatus(bundlesStatus, error.message, "error");
  }
}

// ---- wiring --------------------------------------------------------------------------------------------------

for (const radio of [$("area-circle"), $("area-polygon")]) radio.addEventListener("change", toggleArea);
$("request-form").addEventListener("submit", submitRequest);
$("refresh").addEventListener("click", refresh);
toggleArea();
showState().then((ok) => {
  $("request-fields").disabled = !ok;
  $("refresh").disabled = false;
  if (ok) refresh();
});
