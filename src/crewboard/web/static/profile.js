// The profile page: who you are, your personal API tokens (list with their
// expiry and last use, create — the secret shown once, with a copy button —
// and revoke), and your webhook signing secret (shown on request, copied,
// rotated).
import { api, onReconnect } from "/static/api.js";
import { copyText, el, showError, timeEl } from "/static/dom.js";
import { FormErrors } from "/static/formerror.js";
import { startShell } from "/static/shell.js";

const form = document.getElementById("token-form");
const errorBox = document.getElementById("token-error");
const rows = document.querySelector("#tokens tbody");
const table = document.getElementById("tokens");
const empty = document.getElementById("tokens-empty");
const fresh = document.getElementById("new-token");
const freshValue = document.getElementById("new-token-value");
const copyStatus = document.getElementById("copy-status");

function tokenRow(token) {
  const revoke = el("button", {
    type: "button",
    class: "danger small",
    "aria-label": `Revoke token ${token.name}`,
    onclick: () => revokeToken(token, revoke),
  }, "Revoke");
  return el("tr", { dataset: { tokenId: token.id } },
    el("td", { "data-label": "Name" }, token.name),
    el("td", { "data-label": "Created" }, timeEl(token.createdAt)),
    el("td", { "data-label": "Last used" }, token.lastUsedAt ? timeEl(token.lastUsedAt) : "never"),
    el("td", { "data-label": "Expires" }, expiryText(token.expiresAt)),
    el("td", {}, revoke));
}

function expiryText(expiresAt) {
  if (!expiresAt) return "never";
  const when = timeEl(expiresAt);
  return new Date(expiresAt) <= new Date() ? el("span", { class: "error" }, "expired ", when) : when;
}

async function loadTokens() {
  try {
    const tokens = await api("/api/tokens");
    rows.replaceChildren(...tokens.map(tokenRow));
    table.hidden = tokens.length === 0;
    empty.hidden = tokens.length !== 0;
  } catch (error) {
    showError(errorBox, `Cannot list your tokens: ${error.message}`);
  }
}

async function revokeToken(token, button) {
  if (!confirm(`Revoke the token "${token.name}"? Scripts using it will stop working.`)) return;
  button.disabled = true;
  showError(errorBox, "");
  try {
    await api(`/api/tokens/${token.id}`, { method: "DELETE" });
    if (fresh.dataset.tokenId === String(token.id)) hideFresh();
  } catch (error) {
    showError(errorBox, `Cannot revoke "${token.name}": ${error.message}`);
    button.disabled = false;
    return;
  }
  await loadTokens();
  form.name.focus();
}

function hideFresh() {
  fresh.hidden = true;
  freshValue.value = "";
  copyStatus.textContent = "";
}

const tokenErrors = new FormErrors(form, {
  box: errorBox,
  fields: { name: form.name, expiresInDays: form.expiresInDays },
  labels: { name: "name", expiresInDays: "expiry" },
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  tokenErrors.clear();
  const name = form.name.value.trim();
  if (!name) {
    tokenErrors.show("give the token a name, so you know later what it is for", { field: form.name });
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const days = form.expiresInDays.value;
    const body = days ? { name, expiresInDays: Number(days) } : { name };
    const created = await api("/api/tokens", { method: "POST", body });
    form.reset();
    freshValue.value = created.token;
    document.getElementById("new-token-name").textContent = `“${created.name}”`;
    fresh.dataset.tokenId = created.id;
    copyStatus.textContent = "";
    fresh.hidden = false;
    await loadTokens();
    freshValue.focus();
    freshValue.select();
  } catch (error) {
    tokenErrors.show(error, { prefix: "The token was not created" });
  } finally {
    button.disabled = false;
  }
});

document.getElementById("copy-token").addEventListener("click", async () => {
  const copied = await copyText(freshValue.value, freshValue);
  copyStatus.textContent = copied
    ? "Copied to the clipboard."
    : "Copying is not allowed here: the token is selected, press Ctrl+C (⌘C) to copy it.";
});

const hookSecret = document.getElementById("webhook-secret");
const hookStatus = document.getElementById("webhook-status");
const hookError = document.getElementById("webhook-error");
const copyHook = document.getElementById("copy-webhook-secret");

function showSecret(row) {
  hookSecret.value = row.secret;
  copyHook.hidden = false;
  hookStatus.textContent = `Since ${new Date(row.createdAt).toLocaleString()}.`;
}

async function secretAction(button, request, failure) {
  button.disabled = true;
  showError(hookError, "");
  try {
    showSecret(await request());
  } catch (error) {
    showError(hookError, `${failure}: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

document.getElementById("show-webhook-secret").addEventListener("click", (event) =>
  secretAction(event.currentTarget, () => api("/api/webhooks/secret"), "Cannot show your secret"));

document.getElementById("rotate-webhook-secret").addEventListener("click", (event) => {
  if (!confirm("Rotate your webhook secret? Receivers must be given the new one.")) return;
  secretAction(event.currentTarget,
    () => api("/api/webhooks/secret/rotate", { method: "POST" }), "Cannot rotate your secret");
});

copyHook.addEventListener("click", async () => {
  const copied = await copyText(hookSecret.value, hookSecret);
  hookStatus.textContent = copied
    ? "Copied to the clipboard."
    : "Copying is not allowed here: the secret is selected, press Ctrl+C (⌘C) to copy it.";
});

// The controls above answer from the first click; who is signed in is shown
// once the server has said.
const me = await startShell({ page: "profile" });

const facts = document.getElementById("profile");
for (const [label, value] of [
  ["Email", me.email],
  ["Name", me.name || "—"],
  ["Role", me.isAdmin ? "Administrator" : "User"],
  ["Signed in with", { local: "password", google: "Google", token: "API token" }[me.authMethod] || me.authMethod],
]) {
  facts.append(el("dt", {}, label), el("dd", {}, value));
}

// After the server was away: the list again, without the error that said so.
onReconnect(() => {
  showError(errorBox, "");
  loadTokens();
});

await loadTokens();
