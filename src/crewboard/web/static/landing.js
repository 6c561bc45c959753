// The landing page: what crewboard is, and the way in.
import { startShell } from "/static/shell.js";

const me = await startShell({ page: "landing", requireLogin: false });
if (me) {
  document.getElementById("who").textContent = `Signed in as ${me.email}.`;
  const start = document.getElementById("start");
  start.textContent = "Open chat";
  start.href = "/chat";
}
