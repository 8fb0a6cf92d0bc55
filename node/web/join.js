// Redeem an invite: the code comes from #code=... (the link or QR) or is typed; on success the node sets the
// session cookie and we go to the app.

import { $, postJSON, setStatus } from "./common.js";
import { goSecure, probe, secure } from "./tls.js";

const form = $("join-form");
const code = $("join-code");
const name = $("join-name");
const submit = $("join-submit");
const status = $("join-status");

// Drop the code from the address bar and history; it stays in the (editable) field. Checked again on
// hashchange because opening a second invite link while this page is open only changes the fragment.
// When this device already trusts the node's https address, tls.js moves the page there with the fragment, so
// the code is dropped only once that is settled.
function codeFromFragment() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("code");
  if (!fromLink) return;
  code.value = fromLink;
  secure.then(() => history.replaceState(null, "", location.pathname + location.search));
  name.focus();
}
window.addEventListener("hashchange", codeFromFragment);
codeFromFragment();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  submit.disabled = true;
  setStatus(status, "Checking the code…");
  try {
    const body = { code: code.value.trim() };
    if (name.value.trim()) body.name = name.value.trim();
    const answer = await postJSON("/api/join", body);
    setStatus(status, `Welcome${answer.unit ? `, unit ${answer.unit}` : ""}. Opening the app…`, "ok");
    location.assign("/");
  } catch (error) {
    setStatus(status, error.message, "error");
    submit.disabled = false;
    code.focus();
  }
});

// On plain http with the building's CA on offer: the install steps, the fingerprint to check, and a button that
// opens the secure address once the device trusts it (carrying a typed or linked code along).
secure.then(({ info, trusted }) => {
  if (trusted || !info || info.mode !== "local-ca" || window.isSecureContext) return;
  $("ca-fingerprint").textContent = info.fingerprint;
  $("secure-setup").hidden = false;
  if (location.hash === "#secure") $("secure").scrollIntoView();
  const check = $("secure-check");
  const secureStatus = $("secure-status");
  check.addEventListener("click", async () => {
    check.disabled = true;
    setStatus(secureStatus, "Checking the secure address…");
    if (await probe(info)) {
      const typed = code.value.trim();
      goSecure(info, typed ? `#code=${encodeURIComponent(typed)}` : "");
      return;
    }
    setStatus(secureStatus, "This device does not trust the certificate yet: follow the steps for it above "
      + "(on iPhone, the last step turns on full trust), then try again.", "error");
    check.disabled = false;
  });
});
