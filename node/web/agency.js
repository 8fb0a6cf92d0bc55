// Agency portal: an agency picks its key file, asks the node for footage, follows its requests and downloads
// bundles. Self-contained (the node serves only this script, tls.js and app.css under /agency/).
//
// The private key never leaves the page: it is read from the chosen file into WebCrypto (Ed25519), and every call
// is signed here exactly as node/sharing/client.py signs it: the request document over its canonical JSON
// (node/sharing/requests.py), each HTTP call with RFC 9421 (sync/_httpsig.py, tag "nnode-agency").

import "./tls.js";   // on plain http: move to the https address once this device trusts it

const TAG = "nnode-agency";
const LABEL = "nnode";
const PKCS8_ED25519_PREFIX = "302e020100300506032b657004220420";
const DESCRIPTOR_DOMAIN = "nnode-descriptor-v1:";
const encoder = new TextEncoder();

let agency = null; // { key: CryptoKey (sign only, not extractable), publicHex }

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

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const bytesToHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function base64(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

const base64url = (bytes) => base64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

function fromBase64url(text) {
  const plain = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
  return Uint8Array.from(plain, (c) => c.charCodeAt(0));
}

/** RFC 8785 canonical JSON for what requests hold (strings, whole numbers, objects, arrays). */
function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value !== null && typeof value === "object") {
    // Default sort compares UTF-16 code units, as RFC 8785 asks.
    return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new Error(`${value}: only whole numbers can be signed`);
  if (typeof value === "string") return JSON.stringify(value.normalize("NFC"));
  return JSON.stringify(value);
}

/** POSIX milliseconds as the UTC time a request carries: 2026-11-20T21:00:00Z (whole seconds). */
const utc = (ms) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");

/** An ISO time or POSIX seconds, in the reader's local time. */
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

// ---- the key ---------------------------------------------------------------------------------------------------

/** Read an agency key file (64 hex digits of the ed25519 seed, or 32 raw bytes) into a signing key. */
async function loadKey(file) {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new Error("this page can use your key only over a secure connection (https or this computer)");
  }
  if (file.size > 1024) throw new Error(`${file.name}: too large for an agency key file`);
  const data = new Uint8Array(await file.arrayBuffer());
  let seed;
  if (data.length === 32) {
    seed = data;
  } else {
    const text = new TextDecoder("latin1").decode(data).trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(text)) {
      throw new Error(`${file.name}: an agency key file holds the 32-byte ed25519 private seed as 64 hex digits ` +
                      `(found ${data.length} bytes)`);
    }
    seed = hexToBytes(text);
  }
  const pkcs8 = new Uint8Array(48);
  pkcs8.set(hexToBytes(PKCS8_ED25519_PREFIX));
  pkcs8.set(seed, 16);
  try {
    const exportable = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", exportable);
    const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
    return { key, publicHex: bytesToHex(fromBase64url(jwk.x)) };
  } catch (error) {
    throw new Error(`this browser cannot use Ed25519 keys (WebCrypto): ${error.message || error}`);
  } finally {
    pkcs8.fill(0);
    seed.fill(0);
    data.fill(0);
  }
}

async function sign(bytes) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, agency.key, bytes));
}

/** The signed request document: everything but "sig", signed over its canonical JSON. */
async function signRequest(fields) {
  const document = { ...fields, agency: agency.publicHex };
  delete document.sig;
  document.sig = bytesToHex(await sign(encoder.encode(canonical(document))));
  return document;
}

// ---- signed calls (RFC 9421, as sync/_httpsig.py) ----------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function signedFetch(method, path, body) {
  const url = new URL(path, location.href);
  const headers = { Accept: "application/json" };
  const components = ["@method", "@authority", "@path", "@query"];
  const values = { "@method": method.toUpperCase(), "@authority": location.host.toLowerCase(),
                   "@path": url.pathname || "/", "@query": "?" + url.search.slice(1) };
  let bytes;
  if (body !== undefined) {
    bytes = encoder.encode(body);
    const digest = `sha-256=:${base64(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))}:`;
    headers["Content-Digest"] = values["content-digest"] = digest;
    headers["Content-Type"] = "application/json";
    components.push("content-digest");
  }
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(12)));
  const params = `(${components.map((c) => `"${c}"`).join(" ")});created=${Math.floor(Date.now() / 1000)}` +
                 `;keyid="${agency.publicHex}";alg="ed25519";nonce="${nonce}";tag="${TAG}"`;
  const base = components.map((c) => `"${c}": ${values[c]}`).concat(`"@signature-params": ${params}`).join("\n");
  headers["Signature-Input"] = `${LABEL}=${params}`;
  headers["Signature"] = `${LABEL}=:${base64(await sign(encoder.encode(base)))}:`;
  try {
    return await fetch(url, { method, headers, body: bytes, credentials: "omit", cache: "no-store" });
  } catch {
    throw new ApiError("Cannot reach the node. Check the connection and try again.", 0);
  }
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall back to the status below
  }
  if (!response.ok || !body || body.ok === false) {
    const message = body && typeof body.error === "string" && body.error
      ? body.error : `The node answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, (body && body.status) || response.status);
  }
  return body;
}

const agencyGet = async (path) => answer(await signedFetch("GET", path));
const agencyPost = async (path, value) => answer(await signedFetch("POST", path, JSON.stringify(value)));

// ---- the node's key ------------------------------------------------------------------------------------------

async function showNodeKey() {
  const target = $("node-key");
  try {
    const nonce = base64url(crypto.getRandomValues(new Uint8Array(18)));
    const response = await fetch(`/.well-known/nnode?nonce=${nonce}`, { credentials: "omit", cache: "no-store" });
    const descriptor = await response.json();
    const unsigned = { ...descriptor };
    delete unsigned.sig;
    let checked = "";
    if (crypto.subtle && descriptor.nonce === nonce) {
      try {
        const key = await crypto.subtle.importKey("raw", hexToBytes(descriptor.node), { name: "Ed25519" }, false, ["verify"]);
        const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, hexToBytes(descriptor.sig),
                                              encoder.encode(DESCRIPTOR_DOMAIN + canonical(unsigned)));
        checked = ok ? "" : " (its signature does NOT verify)";
      } catch {
        checked = " (not checked: this browser lacks Ed25519)";
      }
    }
    target.textContent = `${descriptor.node}${checked}`;
  } catch {
    target.textContent = "unknown (the node did not answer)";
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
    const body = await agencyPost("/api/agency/requests", await signRequest(fields));
    const request = body.request || {};
    const state = request.status || request.state;
    setStatus(status, `Request ${request.id || fields.id} sent${state ? `: ${state}` : ""}. The node accepted it.`, "ok");
    await refresh();
  } catch (error) {
    const field = fieldOf(error.message);
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

async function download(bundle, button) {
  const status = $("bundles-status");
  button.disabled = true;
  setStatus(status, `Downloading bundle ${bundle.id}…`);
  try {
    const response = await signedFetch("GET", `/api/agency/bundles/${encodeURIComponent(bundle.id)}`);
    if (!response.ok) await answer(response);
    const blob = await response.blob();
    const href = URL.createObjectURL(blob);
    const link = el("a", { href, download: `${bundle.id}.nnbundle`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
    setStatus(status, `Saved ${bundle.id}.nnbundle (${sizeText(blob.size)}). Check it with nnode verify.`, "ok");
    await refresh();
  } catch (error) {
    setStatus(status, `Download of ${bundle.id} failed: ${error.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

function bundleCard(bundle) {
  const button = el("button", { type: "button", class: "button-small", "aria-label": `Download bundle ${bundle.id}` }, "Download");
  button.addEventListener("click", () => download(bundle, button));
  return el("article", { class: "card", "data-bundle": bundle.id },
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
}

async function refresh() {
  if (!agency) return;
  const requestsStatus = $("requests-status");
  const bundlesStatus = $("bundles-status");
  try {
    const { requests } = await agencyGet("/api/agency/requests");
    $("requests-list").replaceChildren(...requests.map(requestCard));
    setStatus(requestsStatus, requests.length ? "" : "No requests from this agency on this node yet.");
  } catch (error) {
    setStatus(requestsStatus, error.message, "error");
  }
  try {
    const { bundles } = await agencyGet("/api/agency/bundles");
    $("bundles-list").replaceChildren(...bundles.map(bundleCard));
    if (!bundlesStatus.classList.contains("status-ok")) {
      setStatus(bundlesStatus, bundles.length ? "" : "No bundles for this agency yet.");
    }
  } catch (error) {
    setStatus(bundlesStatus, error.message, "error");
  }
}

// ---- wiring --------------------------------------------------------------------------------------------------

$("key-file").addEventListener("change", async () => {
  const file = $("key-file").files[0];
  const status = $("key-status");
  agency = null;
  $("request-fields").disabled = true;
  $("refresh").disabled = true;
  $("key-facts").hidden = true;
  if (!file) return;
  setStatus(status, "Reading the key…");
  try {
    agency = await loadKey(file);
  } catch (error) {
    setStatus(status, error.message, "error");
    return;
  } finally {
    $("key-file").value = "";
  }
  $("key-public").textContent = agency.publicHex;
  $("key-facts").hidden = false;
  setStatus(status, `Key loaded from ${file.name}. It stays in this page.`, "ok");
  $("request-fields").disabled = false;
  $("refresh").disabled = false;
  await refresh();
});

for (const radio of [$("area-circle"), $("area-polygon")]) radio.addEventListener("change", toggleArea);
$("request-form").addEventListener("submit", submitRequest);
$("refresh").addEventListener("click", refresh);
toggleArea();
showNodeKey();
