import { api } from "/static/api.js";

const me = await api("/auth/me");
if (me) {
  document.getElementById("who").textContent = `Signed in as ${me.email}.`;
  const link = document.getElementById("sign-in");
  link.textContent = "Your profile";
  link.href = "/profile";
}
