import { api } from "/static/api.js";

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");
const params = new URLSearchParams(location.search);

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

showError(params.get("error") || "");
api("/auth/google-enabled").then(({ enabled }) => {
  document.getElementById("google").hidden = !enabled;
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    await api("/auth/login", {
      method: "POST",
      body: { email: form.email.value, password: form.password.value },
    });
    const next = params.get("next");
    location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/profile");
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
});
