import { api } from "/static/api.js";

const me = await api("/auth/me");
const list = document.getElementById("profile");
for (const [label, value] of [
  ["Email", me.email],
  ["Name", me.name],
  ["Role", me.isAdmin ? "Administrator" : "User"],
  ["Signed in with", me.authMethod],
]) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}
