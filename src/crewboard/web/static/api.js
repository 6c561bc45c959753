// JSON calls to the HTTP API, and what every page does when the session ends.
//
//   const jobs = await api("/api/jobs");
//   await api("/api/tokens", { method: "POST", body: { name: "laptop" } });
//
// A failed call throws an ApiError carrying the server's message, status and
// details (`details.fields` for 422). A 401 from /api/* means the session is
// gone: the page goes to /login and comes back here after signing in.
//
// Pages recover by themselves after the server was away (restarted, say):
//
//   onReconnect(() => { clearBanners(); refetchEverything(); });
//
// runs each time the server answers again after a call found it unreachable
// (or a stream was told by a gateway that it is away). The header's
// dispatcher poll (shell.js) asks every few seconds, so every page learns of
// it. A stream that merely broke off does not count: a proxy that cuts long
// requests would otherwise look like a server coming and going.

export class ApiError extends Error {
  constructor(message, status = 0, code = "", details = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// --- losing and finding the server -------------------------------------------

const RECONNECTED = "crewboard:reconnected";
let lost = false;

/** The server did not answer (or a gateway said it is not there). */
export function serverLost() {
  lost = true;
}

/** The server answered: if it had been lost, tell the page (onReconnect). */
export function serverAnswered() {
  if (!lost) return;
  lost = false;
  window.dispatchEvent(new Event(RECONNECTED));
}

/** Whether a response means the server itself is away (a proxy's 502/503/504). */
export function isServerAway(response) {
  return response.status >= 502 && response.status <= 504;
}

/** Call `refetch` each time the server answers again after it was lost. */
export function onReconnect(refetch) {
  window.addEventListener(RECONNECTED, () => refetch());
}

/** The name of the event onReconnect listens for (for a one-off listener). */
export const RECONNECTED_EVENT = RECONNECTED;

/** Send the browser to the sign-in page, returning here afterwards. */
export function toLogin() {
  const here = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(here)}`);
}

/** The ApiError for a failed response (its body is read here). */
export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): fall back to the status line.
  }
  const error = body?.error || {};
  const message = error.message || `${response.status} ${response.statusText || "error"}`.trim();
  return new ApiError(message, response.status, error.code || "", error.details || {});
}

/** True for a 401 that should send the user to the sign-in page. */
export function isSessionGone(response, path) {
  return response.status === 401 && path.startsWith("/api/");
}

/** Call the API; resolves to the parsed JSON body (null when empty). */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin", signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    serverLost();
    throw new ApiError("cannot reach the server; check your connection and try again");
  }
  if (isServerAway(response)) serverLost();
  else serverAnswered();
  if (!response.ok) {
    if (isSessionGone(response, path)) toLogin();
    throw await errorFrom(response);
  }
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}
