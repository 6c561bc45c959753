// The sign-in page: local accounts, and Google when the server offers it.
import { api } from "/static/api.js";
import { showError } from "/static/dom.js";
import { FormErrors } from "/static/formerror.js";
import { startShell } from "/static/shell.js";

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");
const params = new URLSearchParams(location.search);
const errors = new FormErrors(form, { box: errorBox, fields: { email: form.email, password: form.password } });

/** Where to go once signed in: `next` if it is a path on this site, else /chat.
 * The same rule as the server's (web/redirects.py): a path starting with one
 * "/", with no backslash and no control or whitespace character (a browser
 * drops tabs and newlines from URLs, so "/\t/evil.example" would become
 * "//evil.example"), that still names this origin once resolved. */
function destination() {
  const next = params.get("next") || "";
  const unsafe = !next.startsWith("/") || next.startsWith("//") || next.includes("\\")
    || /[\s\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/u.test(next);
  if (unsafe) return "/chat";
  // A path such as "/.//x" resolves to "//x", which as a relative URL would
  // name another host: refuse it, and navigate to the absolute URL anyway.
  const url = new URL(next, location.origin);
  const sameSite = url.origin === location.origin && !url.pathname.startsWith("//");
  return sameSite ? url.href : "/chat";
}

// Wired before anything is awaited: a password manager that fills the form
// and submits it at once is answered here, not by a native submit.
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errors.clear();
  if (!form.email.value.trim() || !form.password.value) {
    errors.show("enter your email and password", { field: form.email.value.trim() ? form.password : form.email });
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    await api("/auth/login", {
      method: "POST",
      body: { email: form.email.value.trim(), password: form.password.value },
    });
    location.assign(destination());
  } catch (error) {
    errors.show(error);
    form.password.select();
    button.disabled = false;
  }
});

const me = await startShell({ page: "login", requireLogin: false });
if (me) location.replace(destination());

// A failed Google sign-in comes back here with ?error=.
showError(errorBox, params.get("error") || "");
api("/auth/google-enabled")
  .then(({ enabled }) => {
    document.getElementById("google").hidden = !enabled;
  })
  .catch(() => {
    // Without an answer, offer only local sign-in.
  });
