// The page shell: the header of every page (brand, navigation, who is signed
// in, sign-out, and the live dispatcher indicator).
//
// A page's script starts with
//
//   import { startShell } from "/static/shell.js";
//   const me = await startShell({ page: "chat" });
//
// which renders the header into the page's `<header id="shell">`, and
// resolves to the signed-in profile ({ id, email, name, isAdmin,
// authMethod }). Pages that need a user (the default) go to /login when
// nobody is signed in; `{ requireLogin: false }` resolves to null instead
// (the landing and login pages). `page` marks the current entry of NAV.

import { api, toLogin } from "/static/api.js";
import { el, formatTime, replaceChildren } from "/static/dom.js";

// The main navigation, in order. Add a page here when it exists.
export const NAV = [
  { page: "board", href: "/board", label: "Board" },
  { page: "templates", href: "/templates", label: "Templates" },
  { page: "schedules", href: "/schedules", label: "Schedules" },
  { page: "chat", href: "/chat", label: "Chat" },
  { page: "profile", href: "/profile", label: "Profile" },
];

// How often the header asks whether the dispatcher (the supervisor) is alive.
export const DISPATCHER_POLL_MS = 5000;
// How often a page that could not start asks whether the server is back.
const START_RETRY_MS = 2000;

export async function startShell({ page = "", requireLogin = true } = {}) {
  let header = document.getElementById("shell");
  if (!header) {
    header = el("header", { id: "shell" });
    document.body.prepend(header);
  }
  header.classList.add("shell");
  let me = null;
  try {
    me = await api("/auth/me");
  } catch (error) {
    // No answer at all (the server is down): say so, and go no further.
    render(header, page, null);
    const main = document.getElementById("main") || document.body;
    main.prepend(el("p", { class: "error", role: "alert" },
      `The page cannot start: ${error.message}. It loads by itself once the server answers.`));
    reloadWhenBack();
    return new Promise(() => {});
  }
  if (!me && requireLogin) {
    toLogin();
    // Never resolves: the browser is leaving the page.
    return new Promise(() => {});
  }
  render(header, page, me);
  if (me) watchDispatcher(header.querySelector(".dispatcher"));
  return me;
}

/** Reload the page as soon as the server answers again. */
function reloadWhenBack() {
  setTimeout(async () => {
    try {
      await api("/auth/me");
      location.reload();
    } catch {
      reloadWhenBack();
    }
  }, START_RETRY_MS);
}

function render(header, page, me) {
  const links = me
    ? NAV.map(({ page: name, href, label }) =>
        el("a", { href, "aria-current": name === page ? "page" : null }, label))
    : [];
  replaceChildren(
    header,
    el("a", { class: "skip", href: "#main" }, "Skip to content"),
    el("a", { class: "brand", href: "/" }, "crewboard"),
    links.length ? el("nav", { "aria-label": "Main" }, links) : null,
    el("div", { class: "account" },
      me ? el("span", { class: "dispatcher", role: "status", "aria-live": "polite" },
        el("span", { class: "dot", "aria-hidden": "true" }),
        el("span", { class: "label" }, "Dispatcher…")) : null,
      me ? el("span", { class: "user", title: `Signed in as ${me.email}` }, me.name || me.email) : null,
      me
        ? el("a", { href: "/auth/logout", class: "logout", onclick: signOut }, "Sign out")
        : page === "login" ? null : el("a", { href: "/login", class: "login" }, "Sign in")),
  );
}

/** Sign out with POST /auth/logout (an unsafe request, so only this site's
 * pages can make it), then go home. The link's own GET is the fallback. */
async function signOut(event) {
  event.preventDefault();
  try {
    await api("/auth/logout", { method: "POST" });
    location.assign("/");
  } catch {
    location.assign("/auth/logout");
  }
}

/** Poll /api/dispatcher/status and show whether the dispatcher is alive. */
function watchDispatcher(indicator) {
  const label = indicator.querySelector(".label");
  const show = (state, text, title = "") => {
    indicator.dataset.state = state;
    if (label.textContent !== text) label.textContent = text;
    indicator.title = title;
  };
  async function poll() {
    if (!document.hidden) {
      try {
        const status = await api("/api/dispatcher/status");
        if (status.alive) {
          show("alive", "Dispatcher alive",
            `${status.running} of ${status.capacity} running, ${status.ready} ready`);
        } else if (status.lastHeartbeatAt) {
          show("down", `Dispatcher down since ${formatTime(status.lastHeartbeatAt)}`,
            `last heartbeat ${status.lastHeartbeatAt}`);
        } else {
          show("down", "Dispatcher never started", "no supervisor has ever sent a heartbeat");
        }
      } catch (error) {
        if (error.name === "AbortError") return;
        show("unknown", "Server unreachable", error.message);
      }
    }
    setTimeout(poll, DISPATCHER_POLL_MS);
  }
  poll();
}
