// Redeem an invite: the code comes from #code=... (the link or QR) or is typed; on success the node sets the
// session cookie and we go to the app.

import { $, postJSON, setStatus } from "./common.js";

const form = $("join-form");
const code = $("join-code");
const name = $("join-name");
const submit = $("join-submit");
const status = $("join-status");

// Drop the code from the address bar and history; it stays in the (editable) field. Checked again on
// hashchange because opening a second invite link while this page is open only changes the fragment.
function codeFromFragment() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("code");
  if (!fromLink) return;
  code.value = fromLink;
  history.replaceState(null, "", location.pathname + location.search);
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
