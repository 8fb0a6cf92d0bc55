// Manager sign-in: by password, or automatically with a one-time link (#token=... from `nnode admin-link`).

import { $, postJSON, setStatus } from "./common.js";
import "./tls.js";   // on plain http: move to the https address once this device trusts it

const form = $("login-form");
const password = $("login-password");
const submit = $("login-submit");
const status = $("login-status");

async function signIn(body, waiting) {
  submit.disabled = true;
  setStatus(status, waiting);
  try {
    await postJSON("/api/login", body);
    setStatus(status, "Signed in. Opening the console…", "ok");
    location.assign("/manage");
  } catch (error) {
    setStatus(status, error.message, "error");
    submit.disabled = false;
    password.focus();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  signIn({ password: password.value }, "Checking the password…");
});

// The link works once: take the token out of the address bar and history before using it. Checked again on
// hashchange because opening a link while this page is already open only changes the fragment.
function useTokenFromFragment() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) return;
  history.replaceState(null, "", location.pathname + location.search);
  signIn({ token }, "Signing in with the one-time link…");
}
window.addEventListener("hashchange", useTokenFromFragment);
useTokenFromFragment();
