// Manager console, people: residents (revoke, on call), invites (create with code/link/QR, revoke) and sessions.

import { $, announce, el, formatTime, getJSON, postJSON, setStatus, timeEl } from "./common.js";

/** Fill a table body, or one full-width row saying it is empty. */
export function fillTable(body, rows, columns, emptyText) {
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: columns, class: "muted" }, emptyText))]));
}

/**
 * A button that runs an async action, disabled meanwhile; errors go to `statusNode`. `hidden` names the row
 * for screen readers ("Revoke" alone is ambiguous in a table of revoke buttons).
 */
export function actionButton(label, hidden, action, statusNode, attrs = {}) {
  const button = el("button", { type: "button", class: "button-small", ...attrs },
    label, hidden ? el("span", { class: "visually-hidden" }, ` ${hidden}`) : null);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
      // The list was redrawn without this button: keep keyboard focus near, on the section's status line.
      if (!button.isConnected && statusNode) {
        statusNode.tabIndex = -1;
        statusNode.focus();
      }
    } catch (error) {
      setStatus(statusNode, error.message, "error");
      button.disabled = false;
    }
  });
  return button;
}

const who = (row) => [row.unit && `unit ${row.unit}`, row.name].filter(Boolean).join(", ");

/** Residents: unit, name, sessions, the on-call switch and revoke. */
export function initResidents() {
  const body = $("residents-body");
  const status = $("residents-status");

  const load = async () => {
    try {
      const { residents = [] } = await getJSON("/api/residents");
      fillTable(body, residents.map(row), 6, "No residents yet. Create an invite below.");
      setStatus(status, "");
    } catch (error) {
      setStatus(status, `Could not load residents: ${error.message}`, "error");
    }
  };

  const row = (resident) => {
    const id = encodeURIComponent(resident.id);
    const boxId = `on-call-${resident.id}`;
    const box = el("input", { type: "checkbox", id: boxId, checked: Boolean(resident.on_call), disabled: Boolean(resident.revoked) });
    box.addEventListener("change", async () => {
      const wanted = box.checked;
      box.disabled = true;
      try {
        await postJSON(`/api/residents/${id}/on-call`, { on_call: wanted });
        setStatus(status, `${who(resident)} is ${wanted ? "now" : "no longer"} on call.`, "ok");
      } catch (error) {
        box.checked = !wanted;
        setStatus(status, `Could not change on call: ${error.message}`, "error");
      } finally {
        box.disabled = false;
      }
    });
    return el("tr", { dataset: { id: String(resident.id) } },
      el("td", {}, resident.unit || ""),
      el("td", {}, resident.name || ""),
      el("td", {}, timeEl(resident.created)),
      el("td", {}, String(resident.sessions ?? 0)),
      el("td", {}, el("span", { class: "check" }, box,
        el("label", { for: boxId }, "On call", el("span", { class: "visually-hidden" }, `: ${who(resident)}`)))),
      el("td", {}, resident.revoked
        ? ["Revoked ", timeEl(resident.revoked)]
        : actionButton("Revoke", who(resident), async () => {
          await postJSON(`/api/residents/${id}/revoke`);
          await load(); // first: load() resets the status line
          setStatus(status, `Revoked ${who(resident)} and signed out their devices.`, "ok");
        }, status, { class: "button-small button-danger", dataset: { action: "revoke", id: String(resident.id) } })));
  };

  return { load };
}

/** Invites: the form, the one-time display of code/link/QR, and the list. */
export function initInvites() {
  const form = $("invite-form");
  const unit = $("invite-unit");
  const name = $("invite-name");
  const submit = $("invite-submit");
  const status = $("invite-status");
  const result = $("invite-result");
  const body = $("invites-body");
  const listStatus = $("invites-status");

  const load = async () => {
    try {
      const { invites = [] } = await getJSON("/api/invites");
      fillTable(body, invites.map(row), 6, "No invites yet.");
      setStatus(listStatus, "");
    } catch (error) {
      setStatus(listStatus, `Could not load invites: ${error.message}`, "error");
    }
  };

  const row = (invite) => el("tr", { dataset: { id: String(invite.id) } },
    el("td", {}, invite.unit || ""),
    el("td", {}, invite.name || ""),
    el("td", {}, timeEl(invite.created)),
    el("td", {}, timeEl(invite.expires)),
    el("td", { class: `state-${invite.state}` }, invite.state || ""),
    el("td", {}, invite.state === "open"
      ? actionButton("Revoke", `invite for ${who(invite)}`, async () => {
        await postJSON(`/api/invites/${encodeURIComponent(invite.id)}/revoke`);
        await load(); // first: load() resets the status line
        setStatus(listStatus, `Revoked the invite for ${who(invite)}.`, "ok");
      }, listStatus, { class: "button-small button-danger", dataset: { action: "revoke", id: String(invite.id) } })
      : ""));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    setStatus(status, "Creating…");
    try {
      const body = { unit: unit.value.trim() };
      if (name.value.trim()) body.name = name.value.trim();
      const { invite } = await postJSON("/api/invites", body);
      show(invite);
      setStatus(status, `Invite created for ${who(invite)}. The code is shown only now.`, "ok");
      form.reset();
      await load();
    } catch (error) {
      setStatus(status, error.message, "error");
    } finally {
      submit.disabled = false;
    }
  });

  const show = (invite) => {
    $("invite-result-title").textContent = `Invite for ${who(invite) || "a resident"}`;
    $("invite-code").textContent = invite.code || "";
    const link = $("invite-link");
    link.textContent = invite.link || "";
    link.href = invite.link && /^https?:\/\//i.test(invite.link) ? invite.link : "/join";
    $("invite-expires").textContent = invite.expires ? `Valid until ${formatTime(invite.expires)}.` : "";
    $("invite-fingerprint").textContent = invite.ca_fingerprint || "";
    $("invite-fingerprint-line").hidden = !invite.ca_fingerprint;
    const qr = $("invite-qr");
    qr.replaceChildren();
    if (invite.qr_svg) {
      try {
        qr.append(importSvg(invite.qr_svg, "QR code of the invite link"));
      } catch (error) {
        qr.append(el("p", { class: "status-error" }, `The QR code could not be shown: ${error.message}`));
      }
    }
    result.hidden = false;
    result.scrollIntoView({ block: "nearest" });
    announce(`Invite code ${invite.code}`);
  };

  // Print only the invite card; the class is dropped afterwards so later prints are the whole page again.
  $("invite-print").addEventListener("click", () => {
    document.body.classList.add("print-invite");
    window.print();
  });
  window.addEventListener("afterprint", () => document.body.classList.remove("print-invite"));

  return { load };
}

/**
 * Parse the node's QR SVG and import it into this document. It comes from our own server, but it is still parsed
 * as inert XML (no scripts run in a DOMParser document) and stripped of anything active before it is adopted.
 */
export function importSvg(text, label) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const root = doc.documentElement;
  if (doc.getElementsByTagName("parsererror").length || root.localName !== "svg") throw new Error("not an SVG image");
  for (const bad of root.querySelectorAll("script, foreignObject, iframe, a")) bad.remove();
  for (const node of [root, ...root.querySelectorAll("*")]) {
    for (const attr of [...node.attributes]) {
      // Event handlers and inline styles (the CSP would refuse those anyway); external references too.
      if (/^on/i.test(attr.name) || attr.name === "style" || (/href$/i.test(attr.name) && !attr.value.startsWith("#"))) {
        node.removeAttribute(attr.name);
      }
    }
  }
  // Without a viewBox the image would be cropped instead of scaled by the stylesheet's width.
  const width = parseFloat(root.getAttribute("width"));
  const height = parseFloat(root.getAttribute("height"));
  if (!root.hasAttribute("viewBox") && width && height) root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const svg = document.importNode(root, true);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  return svg;
}

/** Sessions: every signed-in browser; this one can only sign out (the button in the top bar). */
export function initSessions() {
  const body = $("sessions-body");
  const status = $("sessions-status");

  const load = async () => {
    try {
      const { sessions = [] } = await getJSON("/api/sessions");
      fillTable(body, sessions.map(row), 5, "No sessions.");
      setStatus(status, "");
    } catch (error) {
      setStatus(status, `Could not load sessions: ${error.message}`, "error");
    }
  };

  const row = (session) => el("tr", { dataset: { id: String(session.id) } },
    el("td", {}, session.subject_name || (session.role === "manager" ? "Manager" : "Resident")),
    el("td", {}, session.role || ""),
    el("td", {}, timeEl(session.created)),
    el("td", {}, timeEl(session.expires)),
    el("td", {}, session.current
      ? el("strong", {}, "This browser")
      : actionButton("Revoke", `session of ${session.subject_name || session.role}`, async () => {
        await postJSON(`/api/sessions/${encodeURIComponent(session.id)}/revoke`);
        await load(); // first: load() resets the status line
        setStatus(status, "Session revoked.", "ok");
      }, status, { class: "button-small button-danger", dataset: { action: "revoke", id: String(session.id) } })));

  return { load };
}
