// The transparency page at "/transparency", for residents and the manager: the signed head of the disclosure
// audit log, a chart of requests, bundles and downloads per month and agency (with the same numbers as a table),
// every request's public fields, and the log's entries themselves.
//
// Where the browser can (WebCrypto with Ed25519, in a secure context), the head's signature and the hash chain of
// the entries shown are checked here too. That is a convenience: `nnode audit verify` on the node is the real check,
// since it also compares the heads that neighboring nodes keep.

import { $, el, getJSON, loadSession, setStatus, svgEl, timeEl } from "./common.js";
import { requestFacts } from "./sharing.js";
import "./tls.js";   // on plain http: move to the https address once this device trusts it

const LOG_PAGE = 50;
const CHART_MONTHS = 12;
const HEAD_CONTEXT = "nnode-audit-v1:";
// Agency colors: distinct, each at least 3:1 against white (bars are graphics, and the table has the numbers).
const PALETTE = ["#0b5394", "#b3261e", "#1b5e20", "#8a4b00", "#6a1b9a", "#00695c", "#ad1457", "#4a4a4a"];
const METRICS = [
  ["requests", "Requests received", "R"],
  ["bundles", "Bundles prepared", "B"],
  ["downloads", "Downloads", "D"],
];
const ACTIONS = {
  agency_registered: "Agency registered",
  agency_revoked: "Agency revoked",
  request_received: "Request received",
  request_refused: "Request refused",
  consent: "Clip consented to",
  withdrawal: "Consent withdrawn",
  bundle_built: "Bundle prepared",
  bundle_failed: "Bundle could not be prepared",
  download: "Bundle downloaded by the agency",
  hold_released: "Hold released",
  clip_purged: "Clip deleted",
  bundle_expired: "Bundle expired unread",
};
const STATUS = { open: "Open", refused: "Refused", expired: "Expired", elsewhere: "Not for this building" };

async function main() {
  const session = await loadSession();
  if (session.node?.name) {
    $("node-name").textContent = session.node.name;
    document.title = `Transparency: ${session.node.name}`;
  }
  if (!session.role) {
    $("signed-out").hidden = false;
    return;
  }
  if (session.role === "manager") $("manage-link").hidden = false;
  $("transparency").hidden = false;
  const status = $("transparency-status");
  let data;
  try {
    data = await getJSON("/api/transparency");
  } catch (error) {
    setStatus(status, `Could not load the transparency report: ${error.message}`, "error");
    return;
  }
  setStatus(status, "");
  const names = agencyNames(data);
  const cases = new Map((data.requests || []).map((request) => [request.id, request.case_number]));
  showHead(data.node_key, data.head);
  showPeerCheck(data.peer_check);
  showMonths(data.months || [], names);
  showRequests(data.requests || []);
  initLog(data.node_key, data.head, names, cases);
}

function agencyNames(data) {
  const names = new Map();
  for (const row of data.months || []) if (row.name) names.set(row.agency, row.name);
  for (const request of data.requests || []) if (request.agency_name) names.set(request.agency, request.agency_name);
  return names;
}

/** "0123abcd…89ef" for a long hex string. */
function short(hex, keep = 8) {
  return typeof hex === "string" && hex.length > keep * 2 + 1 ? `${hex.slice(0, keep)}\u2026${hex.slice(-keep)}` : String(hex ?? "");
}

// ---- the signed head -----------------------------------------------------------------------------------------------

async function showHead(nodeKey, head) {
  const facts = $("head-facts");
  const check = $("head-check");
  if (!head) {
    facts.replaceChildren(el("dt", {}, "Entries"), el("dd", {}, "None yet: no agency has sent a request."));
    return;
  }
  const rows = [
    ["Entries", el("span", { class: "head-seq" }, String(head.seq))],
    ["Latest entry", timeEl(head.at)],
    ["Its hash", el("code", { class: "key", title: head.hash }, short(head.hash))],
    ["Signed by the node key", el("code", { class: "key", title: nodeKey }, short(nodeKey))],
  ];
  facts.replaceChildren(...rows.flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)]));
  const valid = await verifySignature(nodeKey, head.sig, HEAD_CONTEXT + head.hash);
  if (valid === true) setStatus(check, "This browser checked the signature: it is the node's.", "ok");
  else if (valid === false) setStatus(check, "This browser could not confirm the signature. Ask the manager to run "
    + "nnode audit verify on the node.", "error");
  else check.textContent = "This browser cannot check signatures here; nnode audit verify on the node does.";
}

/** The node's last check of its log against the copies of its heads that neighboring nodes keep. */
function showPeerCheck(report) {
  const line = $("peer-check");
  if (!report) {
    line.textContent = "Not yet checked against the neighboring nodes' copies.";
    return;
  }
  const when = timeEl(report.checked_at);
  if (!report.ok) {
    setStatus(line, `The log does not match what neighboring nodes hold: ${report.problem}`, "error");
    line.append(" (checked ", when, ")");
    return;
  }
  const text = report.holding
    ? `${report.agree} of ${report.holding} neighboring nodes' copies of its heads agree with this log`
    : report.peers ? "No neighboring node holds a head of this log yet" : "This node has no neighboring nodes to ask";
  setStatus(line, `${text} (${report.answered} of ${report.peers} answered), checked `, report.holding ? "ok" : "");
  line.append(when, ".");
}

function hexBytes(hex) {
  if (typeof hex !== "string" || !/^([0-9a-f]{2})*$/i.test(hex)) return null;
  return new Uint8Array(hex.match(/../g)?.map((byte) => parseInt(byte, 16)) || []);
}

let edKey = null; // the imported node key, once

/** true / false, or null when this browser cannot verify Ed25519 (no WebCrypto here, or too old). */
async function verifySignature(nodeKey, sigHex, message) {
  const subtle = globalThis.crypto?.subtle;
  const key = hexBytes(nodeKey);
  const sig = hexBytes(sigHex);
  if (!subtle || !key || key.length !== 32) return null;
  if (!sig || sig.length !== 64) return false;
  try {
    edKey = edKey || await subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    return await subtle.verify({ name: "Ed25519" }, edKey, sig, new TextEncoder().encode(message));
  } catch {
    return null;
  }
}

// ---- the chart and its table -------------------------------------------------------------------------------------

function monthLabel(month, style = "short") {
  const [year, number] = String(month).split("-").map(Number);
  if (!year || !number) return String(month);
  return new Date(Date.UTC(year, number - 1, 1)).toLocaleDateString(undefined, { month: style, year: "numeric", timeZone: "UTC" });
}

/** Every month from the first to the last (empty months count too), the last CHART_MONTHS of them. */
function monthRange(months) {
  const sorted = [...new Set(months)].filter((m) => /^\d{4}-\d\d$/.test(m)).sort();
  if (!sorted.length) return [];
  const [y0, m0] = sorted[0].split("-").map(Number);
  const [y1, m1] = sorted[sorted.length - 1].split("-").map(Number);
  const all = [];
  let y = y0;
  let m = m0;
  while (y < y1 || (y === y1 && m <= m1)) {
    all.push(`${y}-${String(m).padStart(2, "0")}`);
    m += 1;
    if (m > 12) { m = 1; y += 1; }
  }
  return all.slice(-CHART_MONTHS);
}

function showMonths(rows, names) {
  const agencies = [...new Set(rows.map((row) => row.agency))];
  const color = new Map(agencies.map((agency, i) => [agency, PALETTE[i % PALETTE.length]]));
  const nameOf = (agency) => names.get(agency) || `Agency ${short(agency, 4)}`;

  // The table: every row the node sent, newest month first.
  const body = $("months-body");
  const sorted = [...rows].sort((a, b) => (b.month > a.month ? 1 : b.month < a.month ? -1 : 0));
  body.replaceChildren(...sorted.map((row) => el("tr", { dataset: { month: row.month, agency: row.agency } },
    el("th", { scope: "row" }, monthLabel(row.month, "long")),
    el("td", {}, nameOf(row.agency)),
    ...["requests", "consents", "bundles", "downloads", "withdrawals"].map((key) => el("td", { class: "num" }, String(row[key] ?? 0))))));
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 7 }, "Nothing yet: no agency has sent a request.")));

  // The chart.
  const chart = $("chart");
  const legend = $("chart-legend");
  const months = monthRange(rows.map((row) => row.month));
  const value = (month, agency, metric) => Number(rows.find((row) => row.month === month && row.agency === agency)?.[metric]) || 0;
  const total = (month, metric) => agencies.reduce((sum, agency) => sum + value(month, agency, metric), 0);
  const max = Math.max(0, ...months.flatMap((month) => METRICS.map(([metric]) => total(month, metric))));
  if (!months.length || max === 0) {
    chart.replaceChildren(el("p", { class: "muted" }, "Nothing to chart yet: no agency has sent a request."));
    legend.replaceChildren();
    return;
  }

  const BAR = 18, INNER = 4, GROUP_GAP = 28, LEFT = 40, RIGHT = 12, TOP = 12, BOTTOM = 48, PLOT_H = 180;
  const groupW = METRICS.length * BAR + (METRICS.length - 1) * INNER;
  const width = Math.max(320, LEFT + months.length * (groupW + GROUP_GAP) + RIGHT);
  const height = TOP + PLOT_H + BOTTOM;
  const step = max <= 5 ? 1 : Math.ceil(max / 5);
  const top = Math.ceil(max / step) * step;
  const y = (v) => TOP + PLOT_H - (v / top) * PLOT_H;

  const parts = [];
  for (let tick = 0; tick <= top; tick += step) {
    parts.push(svgEl("line", { class: "chart-grid", x1: LEFT, x2: width - RIGHT, y1: y(tick), y2: y(tick) }),
      svgEl("text", { class: "chart-axis", x: LEFT - 6, y: y(tick) + 4, "text-anchor": "end" }, String(tick)));
  }
  months.forEach((month, i) => {
    const x0 = LEFT + GROUP_GAP / 2 + i * (groupW + GROUP_GAP);
    METRICS.forEach(([metric, label, letter], j) => {
      const x = x0 + j * (BAR + INNER);
      let base = 0;
      for (const agency of agencies) {
        const v = value(month, agency, metric);
        if (!v) continue;
        parts.push(svgEl("rect", { class: "chart-bar", x, y: y(base + v), width: BAR, height: y(base) - y(base + v),
          fill: color.get(agency), dataset: { month, metric, agency } },
        svgEl("title", {}, `${monthLabel(month, "long")}, ${nameOf(agency)}: ${v} ${label.toLowerCase()}`)));
        base += v;
      }
      parts.push(svgEl("text", { class: "chart-letter", x: x + BAR / 2, y: TOP + PLOT_H + 16, "text-anchor": "middle" }, letter));
    });
    parts.push(svgEl("text", { class: "chart-month", x: x0 + groupW / 2, y: TOP + PLOT_H + 38, "text-anchor": "middle" },
      monthLabel(month)));
  });
  parts.push(svgEl("line", { class: "chart-baseline", x1: LEFT, x2: width - RIGHT, y1: y(0), y2: y(0) }));

  const sums = METRICS.map(([metric, label]) => `${months.reduce((sum, month) => sum + total(month, metric), 0)} ${label.toLowerCase()}`);
  const summary = `Bar chart, ${monthLabel(months[0], "long")} to ${monthLabel(months[months.length - 1], "long")}: `
    + `${sums.join(", ")}. The numbers per month and agency are in the table below.`;
  chart.replaceChildren(svgEl("svg", { class: "chart-svg", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "img", "aria-label": summary }, parts));

  legend.replaceChildren(
    el("ul", { class: "legend-agencies" }, agencies.map((agency) => {
      const swatch = el("span", { class: "legend-swatch", "aria-hidden": "true" });
      swatch.style.backgroundColor = color.get(agency);
      return el("li", {}, swatch, nameOf(agency));
    })),
    el("p", { class: "legend-metrics" }, METRICS.map(([, label, letter]) => `${letter}: ${label.toLowerCase()}`).join(" \u00b7 ")));
}

// ---- every request -----------------------------------------------------------------------------------------------

function showRequests(requests) {
  const list = $("requests-list");
  const sorted = [...requests].sort((a, b) => (Number(b.received ?? b.created) || 0) - (Number(a.received ?? a.created) || 0)
    || String(b.created).localeCompare(String(a.created)));
  const now = Date.now();
  list.replaceChildren(...sorted.map((request) => {
    const emergency = request.urgency === "emergency";
    const expired = request.status === "open" && (Date.parse(request.expires) || Infinity) <= now;
    const state = expired ? "expired" : request.status || "open";
    return el("article", { class: `card agency-request${emergency ? " request-emergency" : ""}${request.status === "refused" ? " request-refused" : ""}`,
      dataset: { id: request.id, status: request.status || "" } },
    el("header", { class: "card-head" },
      emergency ? el("span", { class: "badge badge-emergency" }, "Emergency") : null,
      el("span", { class: `tag tag-${state}` }, STATUS[state] || state)),
    el("h3", {}, `${request.agency_name || `Agency ${short(request.agency, 4)}`}: case ${request.case_number || "(no number)"}`),
    requestFacts(request, [
      ["Clips shared", String(request.disclosed ?? 0)],
      ["Downloaded", String(request.downloaded ?? 0)],
    ]));
  }));
  if (!requests.length) list.append(el("p", { class: "muted" }, "No agency has asked this building for footage."));
}

// ---- the log -----------------------------------------------------------------------------------------------------

function canonical(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(",")}}`;
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

function initLog(nodeKey, head, names, cases) {
  const body = $("log-body");
  const status = $("log-status");
  const more = $("log-more");
  let after = 0;
  let prevHash = "0".repeat(64);
  let checked = 0;
  let problem = "";
  let canCheck = Boolean(globalThis.crypto?.subtle);

  const check = async (entry) => {
    if (!canCheck || problem) return;
    try {
      const { hash, sig, ...rest } = entry;
      if (entry.prev !== prevHash) problem = `entry ${entry.seq} does not follow the one before it`;
      else if (await sha256Hex(canonical(rest)) !== hash) problem = `entry ${entry.seq} does not match its hash`;
      else {
        const valid = await verifySignature(nodeKey, sig, HEAD_CONTEXT + hash);
        if (valid === false) problem = `entry ${entry.seq} is not signed by the node key`;
        else if (valid === null) canCheck = false;
      }
      prevHash = hash;
      checked = entry.seq;
    } catch {
      canCheck = false;
    }
  };

  const row = (entry) => el("tr", { dataset: { seq: String(entry.seq), action: entry.action } },
    el("td", { class: "num" }, String(entry.seq)),
    el("td", {}, timeEl(entry.at)),
    el("td", {}, ACTIONS[entry.action] || entry.action),
    el("td", {}, entry.agency ? names.get(entry.agency) || short(entry.agency, 4) : ""),
    el("td", {}, entry.request_id ? (cases.get(entry.request_id) ? `case ${cases.get(entry.request_id)}` : short(entry.request_id, 4)) : ""),
    el("td", {}, el("code", { class: "key", title: entry.hash }, short(entry.hash, 6))));

  const load = async () => {
    more.disabled = true;
    try {
      const answer = await getJSON(`/api/transparency/log?after=${after}&limit=${LOG_PAGE}`);
      const entries = answer.entries || [];
      for (const entry of entries) await check(entry);
      body.append(...entries.map(row));
      if (entries.length) after = entries[entries.length - 1].seq;
      if (typeof answer.next === "number" && answer.next > after) after = answer.next;
      more.hidden = entries.length < LOG_PAGE;
      if (!body.children.length) {
        setStatus(status, "The log is empty.");
      } else if (problem) {
        setStatus(status, `Checked in this browser: ${problem}. Ask the manager to run nnode audit verify on the node.`,
          "error");
      } else if (canCheck && checked) {
        const atHead = head && checked === head.seq ? ", up to the signed head" : "";
        setStatus(status, `Checked in this browser: entries 1 to ${checked} chain together, match their hashes and `
          + `carry the node's signature${atHead}.`, "ok");
      } else {
        setStatus(status, "");
      }
    } catch (error) {
      setStatus(status, `Could not load the log: ${error.message}`, "error");
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", load);
  load();
}

main();
