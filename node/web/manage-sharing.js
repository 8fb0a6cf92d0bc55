// Manager console, sharing with agencies: the "Agency requests" panel (each request and the building cameras'
// matching clips, shared clip by clip), the banner for an emergency request, and the "Agencies" panel (the
// registry: register by key or from a credential, revoke).
//
// manage.js starts it and hands it the live stream's "agency-request" and "consent" messages.

import { $, announce, debounce, el, getJSON, notify, postJSON, setStatus, timeEl } from "./common.js";
import { RequestList } from "./sharing.js";

const DISMISSED_KEY = "nnode.agency-banner.dismissed";

/** Build both panels and the banner; returns the live-message handlers for manage.js's stream. */
export function initSharing() {
  let banner = null;
  const requests = new RequestList($("agency-requests-list"), $("agency-requests-status"), {
    manager: true,
    onLoaded: (list) => banner?.fromList(list),
    onRegister(key) {
      $("agency-key").value = key;
      $("agency-form").scrollIntoView({ block: "start" });
      $("agency-name").focus({ preventScroll: true });
      announce("The agency's key is filled in below. Confirm it with the agency, then give its name.");
    },
  });
  banner = initBanner(requests);
  const agencies = initAgencies(() => requests.load());
  requests.load();
  agencies.load();

  const reload = debounce(() => requests.load(), 400);
  return {
    "agency-request"(data) {
      if (data.urgency === "emergency") banner.add(data, true);
      reload();
    },
    consent() { reload(); },
  };
}

/** The banner for emergency requests: shown at once, until the manager reviews or dismisses it on this device. */
function initBanner(requests) {
  const node = $("agency-banner");
  const text = $("agency-banner-text");
  const more = $("agency-banner-more");
  const queue = new Map(); // request id -> {id, agency_name, case_number}
  const dismissed = new Set(readDismissed());
  let shown = null;

  const render = () => {
    const waiting = [...queue.values()].filter((item) => !dismissed.has(item.id));
    const first = waiting[waiting.length - 1]; // the newest
    if (!first) {
      node.hidden = true;
      shown = null;
      return;
    }
    shown = first.id;
    node.hidden = false;
    text.textContent = `${first.agency_name || "An agency"} asks urgently for footage, case ${first.case_number || "(no number)"}.`;
    more.textContent = waiting.length > 1 ? `${waiting.length - 1} more emergency request(s) in the panel below.` : "";
  };

  const dismiss = (id) => {
    dismissed.add(id);
    try {
      localStorage.setItem(DISMISSED_KEY, JSON.stringify([...dismissed].slice(-200)));
    } catch {
      // Private mode or storage full: dismissed for this page only.
    }
    render();
  };

  $("agency-banner-review").addEventListener("click", async () => {
    const id = shown;
    if (!id) return;
    dismiss(id);
    if (!requests.focus(id)) {
      await requests.load();
      if (!requests.focus(id)) $("agency-requests-title").focus();
    }
  });
  $("agency-banner-dismiss").addEventListener("click", () => {
    if (shown) dismiss(shown);
    $("main").focus();
  });

  return {
    /** A live "agency-request" message with urgency "emergency". */
    add(data, live = false) {
      if (!data?.id) return;
      const fresh = !queue.has(data.id);
      queue.set(data.id, { id: data.id, agency_name: data.agency_name, case_number: data.case_number });
      if (live && fresh) {
        dismissed.delete(data.id);
        const words = `Emergency request for footage from ${data.agency_name || "an agency"}, case ${data.case_number || ""}. `
          + "Nothing is shared unless you choose clips.";
        announce(words, true);
        notify("Emergency request for footage", { body: words, tag: `agency-request-${data.id}`, requireInteraction: true });
      }
      render();
    },
    /** After each load: open emergency requests with nothing shared yet still want a look. */
    fromList(list) {
      const open = new Set();
      for (const request of list) {
        if (request.urgency !== "emergency" || request.status !== "open") continue;
        open.add(request.id);
        const acted = (request.clips || []).some((clip) => clip.consent);
        if (acted) dismissed.add(request.id);
        if (!queue.has(request.id)) {
          queue.set(request.id, { id: request.id, agency_name: request.agency?.name, case_number: request.case_number });
        }
      }
      for (const id of [...queue.keys()]) if (!open.has(id)) queue.delete(id);
      render();
    },
  };
}

function readDismissed() {
  try {
    const value = JSON.parse(localStorage.getItem(DISMISSED_KEY) || "[]");
    return Array.isArray(value) ? value.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

/** "0123abcd…89ef" for a 64-hex key. */
function shortKey(key) {
  return typeof key === "string" && key.length > 20 ? `${key.slice(0, 8)}\u2026${key.slice(-8)}` : String(key || "");
}

/** The Agencies panel; `onChange` runs after a registration or revocation (refused requests may reopen). */
function initAgencies(onChange) {
  const body = $("agencies-body");
  const status = $("agencies-status");

  const load = async () => {
    try {
      const { agencies = [] } = await getJSON("/api/agencies");
      body.replaceChildren(...agencies.map((agency) => row(agency)));
      if (!agencies.length) {
        body.append(el("tr", {}, el("td", { colspan: 6 }, "No agency is registered. Requests from unknown agencies "
          + "are refused, and you see them with the reason.")));
      }
      setStatus(status, "");
    } catch (error) {
      setStatus(status, `Could not load agencies: ${error.message}`, "error");
    }
  };

  const row = (agency) => {
    const revoked = Boolean(agency.revoked);
    const source = agency.source === "anchor"
      ? ["Accredited by trust anchor ", el("span", { class: "key" }, shortKey(agency.anchor))]
      : "Registered by you";
    const state = revoked
      ? el("span", { class: "state-revoked" }, "Revoked on ", timeEl(agency.revoked),
        agency.revoke_reason ? `: ${agency.revoke_reason}` : "")
      : el("span", { class: "state-open" }, "Active",
        agency.expires ? [", until ", timeEl(agency.expires)] : "");
    return el("tr", { dataset: { key: agency.key } },
      el("td", {}, el("strong", {}, agency.name || "(no name)"),
        agency.jurisdiction ? el("span", { class: "muted agency-jurisdiction" }, agency.jurisdiction) : null,
        agency.contact ? el("span", { class: "muted agency-contact" }, agency.contact) : null),
      el("td", {}, el("span", { class: "key", title: agency.key }, shortKey(agency.key))),
      el("td", {}, source),
      el("td", {}, timeEl(agency.added)),
      el("td", {}, state),
      el("td", {}, revoked ? "" : revokeControl(agency)));
  };

  const revokeControl = (agency) => {
    const name = agency.name || shortKey(agency.key);
    const ask = el("button", { type: "button", class: "button-small button-danger agency-revoke" },
      "Revoke", el("span", { class: "visually-hidden" }, ` ${name}`));
    const id = `revoke-reason-${agency.key}`;
    const reason = el("input", { id, maxlength: 200, autocomplete: "off", required: true,
      placeholder: "e.g. key reported stolen" });
    const yes = el("button", { type: "submit", class: "button-small button-danger agency-revoke-yes" }, "Revoke for good");
    const no = el("button", { type: "button", class: "button-small button-secondary" }, "Cancel");
    const formStatus = el("p", { class: "form-status", role: "alert" });
    const form = el("form", { class: "revoke-form", hidden: true },
      el("label", { for: id }, `Why revoke ${name}?`), reason,
      el("p", { class: "hint" }, "Its open requests are refused and its bundles can no longer be downloaded. "
        + "This cannot be undone."),
      el("div", { class: "actions" }, yes, no), formStatus);
    ask.addEventListener("click", () => { ask.hidden = true; form.hidden = false; reason.focus(); });
    no.addEventListener("click", () => { form.hidden = true; ask.hidden = false; ask.focus(); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      yes.disabled = true;
      try {
        await postJSON(`/api/agencies/${encodeURIComponent(agency.key)}/revoke`, { reason: reason.value.trim() });
        const text = `${name} is revoked.`;
        setStatus(status, text, "ok");
        announce(text);
        await load();
        onChange();
        $("agencies-title").focus();
      } catch (error) {
        yes.disabled = false;
        setStatus(formStatus, `Could not revoke: ${error.message}`, "error");
      }
    });
    return el("div", {}, ask, form);
  };

  // Register by key.
  const form = $("agency-form");
  const formStatus = $("agency-form-status");
  const key = $("agency-key");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = key.value.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(value)) {
      setStatus(formStatus, "The key must be 64 hexadecimal characters (0-9, a-f).", "error");
      key.focus();
      return;
    }
    const submit = $("agency-submit");
    submit.disabled = true;
    try {
      const { agency } = await postJSON("/api/agencies", {
        key: value, name: $("agency-name").value.trim(), jurisdiction: $("agency-jurisdiction").value.trim(),
        contact: $("agency-contact").value.trim(),
      });
      form.reset();
      const text = `${agency?.name || "The agency"} is registered. Its requests are now looked at.`;
      setStatus(formStatus, text, "ok");
      announce(text);
      await load();
      onChange();
    } catch (error) {
      setStatus(formStatus, `Could not register the agency: ${error.message}`, "error");
    } finally {
      submit.disabled = false;
    }
  });

  // Register from a credential signed by a trust anchor.
  const credentialForm = $("credential-form");
  const credentialStatus = $("credential-status");
  const credentialText = $("credential-text");
  credentialForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    let credential;
    try {
      credential = JSON.parse(credentialText.value);
    } catch (error) {
      setStatus(credentialStatus, `This is not a credential: it is not valid JSON (${error.message}).`, "error");
      credentialText.focus();
      return;
    }
    if (!credential || typeof credential !== "object" || Array.isArray(credential)) {
      setStatus(credentialStatus, "This is not a credential: expected a JSON object.", "error");
      credentialText.focus();
      return;
    }
    const submit = $("credential-submit");
    submit.disabled = true;
    try {
      const { agency } = await postJSON("/api/agencies/credentials", { credential });
      credentialForm.reset();
      const text = `${agency?.name || "The agency"} is registered from its credential.`;
      setStatus(credentialStatus, text, "ok");
      announce(text);
      await load();
      onChange();
    } catch (error) {
      setStatus(credentialStatus, `The credential was not accepted: ${error.message}`, "error");
    } finally {
      submit.disabled = false;
    }
  });

  return { load };
}
